# Builds the busybox test image from the host's static /bin/busybox, with
# no registry: a root filesystem tar for `podman import` and `docker import`,
# and an OCI image layout archive for `ctr images import`.
# Sourced by run.sh.

# build_rootfs_tar OUT.tar: /bin/busybox, a symlink for each applet it
# lists, the usual empty top-level directories, and /etc/passwd and
# /etc/group with root, nobody and a user 1000.
build_rootfs_tar() {
    local out=$1 dir
    dir=$(mktemp -d)
    mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,home,var/tmp}
    chmod 1777 "$dir/tmp" "$dir/var/tmp"
    cp /bin/busybox "$dir/bin/busybox"
    local applet
    while read -r applet; do
        [ -e "$dir/$applet" ] || ln -s /bin/busybox "$dir/$applet"
    done < <(/bin/busybox --list-full)
    cat > "$dir/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat > "$dir/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
    tar -C "$dir" --numeric-owner --owner=0 --group=0 -cf "$out" .
    rm -rf "$dir"
}

# build_oci_archive ROOTFS.tar NAME OUT.tar: an OCI image layout (one
# uncompressed layer, so its digest is also its diff id) tarred up, with
# NAME in the index's org.opencontainers.image.ref.name annotation, which
# `ctr images import` uses as the image name.
build_oci_archive() {
    local rootfs_tar=$1 name=$2 out=$3 dir
    dir=$(mktemp -d)
    mkdir -p "$dir/blobs/sha256"

    local layer_digest layer_size
    layer_digest=$(sha256sum "$rootfs_tar" | cut -d' ' -f1)
    layer_size=$(stat -c %s "$rootfs_tar")
    cp "$rootfs_tar" "$dir/blobs/sha256/$layer_digest"

    local arch
    case "$(uname -m)" in
        x86_64) arch=amd64 ;;
        aarch64) arch=arm64 ;;
        *) arch=$(uname -m) ;;
    esac
    printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$arch" "$layer_digest" > "$dir/config.json"
    local config_digest config_size
    config_digest=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
    config_size=$(stat -c %s "$dir/config.json")
    mv "$dir/config.json" "$dir/blobs/sha256/$config_digest"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
        "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$dir/manifest.json"
    local manifest_digest manifest_size
    manifest_digest=$(sha256sum "$dir/manifest.json" | cut -d' ' -f1)
    manifest_size=$(stat -c %s "$dir/manifest.json")
    mv "$dir/manifest.json" "$dir/blobs/sha256/$manifest_digest"

    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest_digest" "$manifest_size" "$name" > "$dir/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' > "$dir/oci-layout"
    tar -C "$dir" -cf "$out" oci-layout index.json blobs
    rm -rf "$dir"
}
