//! Bounded fuzzing of `spec::validate` that runs on a stable toolchain.
//!
//! Each round takes a seed configuration from fuzz/corpus/spec, changes it
//! with a deterministic pseudo-random generator (at the JSON level, so that
//! most inputs get past the parser, and at the byte level), and checks that
//! `validate` returns instead of panicking. It runs for `FUZZ_SECONDS`
//! seconds (default 2) from seed `FUZZ_SEED` (default 1). A panic fails the
//! test and saves the input under target/fuzz-failures/. The libFuzzer
//! target fuzz/fuzz_targets/spec.rs calls the same function, and
//! scripts/fuzz-spec runs either.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// splitmix64: small, fast and fully determined by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Field names of the runtime spec, for inserted members.
const SPEC_KEYS: &[&str] = &[
    "ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks", "linux", "annotations",
    "args", "env", "cwd", "user", "uid", "gid", "umask", "additionalGids", "capabilities", "bounding",
    "effective", "ambient", "rlimits", "type", "hard", "soft", "terminal", "consoleSize", "height",
    "width", "noNewPrivileges", "oomScoreAdj", "apparmorProfile", "selinuxLabel", "path", "readonly",
    "destination", "source", "options", "prestart", "createContainer", "startContainer", "timeout",
    "namespaces", "uidMappings", "gidMappings", "containerID", "hostID", "size", "devices", "major",
    "minor", "fileMode", "resources", "memory", "limit", "swap", "swappiness", "cpu", "shares", "quota",
    "period", "cpus", "pids", "blockIO", "weight", "access", "allow", "cgroupsPath", "sysctl",
    "seccomp", "defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls", "names",
    "action", "errnoRet", "index", "value", "valueTwo", "op", "rootfsPropagation", "maskedPaths",
    "readonlyPaths", "mountLabel", "unified", "hugepageLimits", "pageSize", "rdma", "network",
];

/// Strings that reach the edge cases of the checks: paths, names of
/// capabilities, actions and operators, and malformed values.
const STRINGS: &[&str] = &[
    "", "/", "..", "../../..", "/proc/self/fd/3", "relative/path", "a\u{0}b", "CAP_SYS_ADMIN", "CAP_BOGUS",
    "SCMP_ACT_KILL", "SCMP_ACT_NOTIFY", "SCMP_CMP_MASKED_EQ", "SCMP_ARCH_AARCH64", "RLIMIT_NOFILE",
    "rbind", "ro", "size=1m", "idmap", "rro", "bind", "pid", "user", "time", "1.0.2", "2.0.0", "c", "b",
    "a", "p", "rwm", "x", "0-1,3", "system.slice:conman:id", "::", "max", "-1", "\u{1F600}",
];

fn random_value(rng: &mut Rng, donor: &Value) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => Value::from(STRINGS[rng.below(STRINGS.len())]),
        3 => Value::from("x".repeat(rng.below(5000))),
        4 => {
            let numbers = [0i64, 1, -1, 255, 256, 1024, 65535, 65536, i32::MAX as i64, i64::MIN, i64::MAX];
            Value::from(numbers[rng.below(numbers.len())])
        }
        5 => Value::from(u64::MAX - rng.below(3) as u64),
        6 => serde_json::json!(1e308),
        7 => Value::Array(Vec::new()),
        8 => Value::Object(Map::new()),
        9 => Value::Array((0..rng.below(4)).map(|_| Value::from(STRINGS[rng.below(STRINGS.len())])).collect()),
        10 => pick_subtree(rng, donor).clone(),
        _ => {
            let mut object = Map::new();
            object.insert(SPEC_KEYS[rng.below(SPEC_KEYS.len())].to_owned(), Value::from(STRINGS[rng.below(STRINGS.len())]));
            Value::Object(object)
        }
    }
}

/// Returns a random node of `value`, walking down from the root.
fn pick_subtree<'a>(rng: &mut Rng, value: &'a Value) -> &'a Value {
    let mut node = value;
    loop {
        let next = match node {
            Value::Object(map) if !map.is_empty() && rng.chance(70) => map.values().nth(rng.below(map.len())),
            Value::Array(items) if !items.is_empty() && rng.chance(70) => items.get(rng.below(items.len())),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => return node,
        }
    }
}

/// Changes one random node of `value`: replaces it, removes a member or an
/// element, or inserts a spec field.
fn mutate_json(rng: &mut Rng, value: &mut Value, donor: &Value) {
    let replacement = random_value(rng, donor);
    mutate_node(rng, value, replacement);
}

fn mutate_node(rng: &mut Rng, node: &mut Value, replacement: Value) {
    let descend = rng.chance(75);
    let action = rng.below(3);
    match node {
        Value::Object(map) if !map.is_empty() && descend => {
            let key = map.keys().nth(rng.below(map.len())).expect("index within length").clone();
            return mutate_node(rng, map.get_mut(&key).expect("key just listed"), replacement);
        }
        Value::Array(items) if !items.is_empty() && descend => {
            let index = rng.below(items.len());
            return mutate_node(rng, &mut items[index], replacement);
        }
        Value::Object(map) if action == 0 && !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).expect("index within length").clone();
            map.remove(&key);
            return;
        }
        Value::Object(map) if action == 1 => {
            map.insert(SPEC_KEYS[rng.below(SPEC_KEYS.len())].to_owned(), replacement);
            return;
        }
        Value::Array(items) if action == 0 && !items.is_empty() => {
            let index = rng.below(items.len());
            items.remove(index);
            return;
        }
        Value::Array(items) if action == 1 => {
            items.push(replacement);
            return;
        }
        _ => {}
    }
    *node = replacement;
}

/// Bytes that matter to a JSON parser.
const JSON_BYTES: &[u8] = b"{}[]\",:\\0123456789-+.eEtfn \n\x00\xff";

fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.push(JSON_BYTES[rng.below(JSON_BYTES.len())]);
        return;
    }
    let at = rng.below(bytes.len());
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = JSON_BYTES[rng.below(JSON_BYTES.len())],
        2 => bytes.insert(at, JSON_BYTES[rng.below(JSON_BYTES.len())]),
        3 => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            bytes.drain(at..end);
        }
        4 => {
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            let copy = bytes[at..end].to_vec();
            let to = rng.below(bytes.len());
            bytes.splice(to..to, copy);
        }
        _ => bytes.truncate(at),
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/spec")
}

fn load_seeds() -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir();
    let mut seeds: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("read the corpus {}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = fs::read(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
            (path.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Runs `validate` on `input`; on a panic, saves the input and fails.
fn check_input(input: &[u8], round: u64) {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = runtime::spec::validate(input);
    }));
    if outcome.is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
        fs::create_dir_all(&dir).expect("create target/fuzz-failures");
        let path = dir.join(format!("spec-round-{round}.json"));
        fs::write(&path, input).expect("save the failing input");
        panic!("spec::validate panicked in round {round}; input saved to {}", path.display());
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

#[test]
fn seeds_are_valid() {
    for (name, bytes) in load_seeds() {
        if let Err(err) = runtime::spec::validate(&bytes) {
            panic!("seed {name} is rejected: {err}");
        }
    }
}

#[test]
fn validate_never_panics() {
    let seconds = env_number("FUZZ_SECONDS", 2);
    let mut rng = Rng(env_number("FUZZ_SEED", 1));
    let seeds = load_seeds();
    let parsed: Vec<Value> = seeds
        .iter()
        .map(|(name, bytes)| serde_json::from_slice(bytes).unwrap_or_else(|err| panic!("seed {name} is not JSON: {err}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut rounds, mut accepted) = (0u64, 0u64);

    while Instant::now() < deadline {
        let pick = rng.below(seeds.len());
        let mut value = parsed[pick].clone();
        let donor = &parsed[rng.below(parsed.len())];
        for _ in 0..1 + rng.below(4) {
            mutate_json(&mut rng, &mut value, donor);
        }
        let mut bytes = serde_json::to_vec(&value).expect("a Value serialises");
        if rng.chance(30) {
            for _ in 0..1 + rng.below(3) {
                mutate_bytes(&mut rng, &mut bytes);
            }
        }
        check_input(&bytes, rounds);
        accepted += u64::from(runtime::spec::validate(&bytes).is_ok());
        rounds += 1;
    }

    eprintln!("spec fuzz: {rounds} inputs in {seconds} s, {accepted} accepted");
    assert!(rounds > 0, "no input ran in {seconds} s");
}
