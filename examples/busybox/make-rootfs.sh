#!/bin/sh
# Make the root filesystem of the example image: Debian's static busybox, one symlink per
# applet, and the few files a container expects. Usage: make-rootfs.sh DIR
set -eu
dir=$1
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! ldd "$busybox" 2>&1 | grep -q "not a dynamic"; then
    echo "make-rootfs.sh: needs a static busybox (Debian: apt-get install busybox-static)" >&2
    exit 1
fi
# Mount points a runtime expects to find (runc does not create them in a read-only root).
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/home/app" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/mnt"
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
chmod 1777 "$dir/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$dir/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' > "$dir/etc/group"
