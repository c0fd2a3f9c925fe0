#!/usr/bin/env bash
# test/vm/build.sh [OUTDIR]: build masq's QEMU test guest from Debian
# packages, without installing them: the kernel of linux-image-amd64, its
# virtio-net modules, and an initramfs of busybox-static with test/vm/init.
#
# The result goes to OUTDIR/<key>/ (OUTDIR defaults to $MASQ_VM_CACHE, else
# $XDG_CACHE_HOME/masq-vm when set, else /var/cache/masq-vm), where <key>
# names the package versions and a digest of this directory's files, so a
# second run only asks apt-cache for the versions. The last line printed is
# that directory; it holds
#   bzImage   the kernel as packaged (boots with QEMU's default SeaBIOS)
#   vmlinux   the same kernel uncompressed (an ELF with a PVH entry: boots
#             with -bios qboot.rom, faster)
#   initrd    the initramfs (cpio newc, gzip)
# Needs apt-get (with current package lists), dpkg-deb, cpio, gzip, xz
# and zstd (for compressed modules); no root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${MASQ_VM_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/masq-vm}}}
out=${out:-/var/cache/masq-vm}

# The network driver and what it needs; some may be built in.
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net"

kpkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || { echo "build.sh: linux-image-amd64 depends on no linux-image-*: run apt-get update" >&2; exit 1; }
# The candidate versions apt would download, in one call (each takes 0.5 s).
read -r kver bver < <(apt-cache policy "$kpkg" busybox-static | awk '$1 == "Candidate:" { printf "%s ", $2 } END { print "" }')
[ -n "$kver" ] && [ "$kver" != "(none)" ] && [ -n "$bver" ] && [ "$bver" != "(none)" ] ||
	{ echo "build.sh: no candidate for $kpkg or busybox-static: run apt-get update" >&2; exit 1; }
digest=$(cat "$here/build.sh" "$here/init" "$here/udhcpc.script" | sha256sum | cut -c1-12)
key="${kpkg}_${kver}+busybox_${bver}+${digest}"
key=${key//[:~]/_}
dest="$out/$key"
if [ -f "$dest/initrd" ]; then
	echo "$dest"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt-get download writes into the current directory; as root it hands the
# download to the user _apt, who must be able to write there.
mkdir "$tmp/dl"
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
	chmod 755 "$tmp"
	chown _apt "$tmp/dl"
fi
(cd "$tmp/dl" && apt-get download -q "$kpkg=$kver" "busybox-static=$bver" >&2)
dpkg-deb -x "$tmp"/dl/linux-image-*.deb "$tmp/k"
dpkg-deb -x "$tmp"/dl/busybox-static_*.deb "$tmp/bb"
release=${kpkg#linux-image-}
moddir="$tmp/k/lib/modules/$release"
[ -d "$moddir" ] || moddir=$(echo "$tmp"/k/lib/modules/*)

root="$tmp/root"
mkdir -p "$root/bin" "$root/modules"
cp "$tmp/bb/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init" "$root/init"
cp "$here/udhcpc.script" "$root/udhcpc.script"
chmod 755 "$root/init" "$root/udhcpc.script"

# modfile NAME: the module's file (names match with - and _ alike), or
# nothing when it is built in.
modfile() {
	local pat=${1//[-_]/[-_]}
	find "$moddir/kernel" -regextype posix-extended -regex ".*/${pat}\.ko(\.xz|\.zst|\.gz)?" | head -1
}

# add NAME: copy the module, decompressed (busybox insmod may not
# decompress), after its dependencies, into $root/modules/order. The
# package has no modules.dep (depmod makes it on installation), so the
# dependencies are the module's own depends= field, which modpost wrote
# from the symbols it uses: what depmod would find.
declare -A seen
add() {
	local name=${1//-/_} f ko dep
	[ -z "${seen[$name]:-}" ] || return 0
	seen[$name]=1
	f=$(modfile "$name")
	if [ -z "$f" ]; then
		grep -qE "/${name//_/[-_]}\.ko" "$moddir/modules.builtin" ||
			{ echo "build.sh: module $name is neither in $kpkg nor built in" >&2; exit 1; }
		return 0
	fi
	ko="$root/modules/$name.ko"
	case "$f" in
	*.xz) xz -dc "$f" >"$ko" ;;
	*.zst) zstd -q -dc "$f" >"$ko" ;;
	*.gz) gzip -dc "$f" >"$ko" ;;
	*) cp "$f" "$ko" ;;
	esac
	for dep in $(grep -ao 'depends=[a-z0-9_,-]*' "$ko" | head -1 | cut -d= -f2 | tr , ' '); do
		add "$dep"
	done
	echo "$name" >>"$root/modules/order"
}
: >"$root/modules/order"
for m in $modules; do
	add "$m"
done

mkdir -p "$tmp/dest"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$tmp/dest/initrd"
cp "$moddir/../../../boot/vmlinuz-$release" "$tmp/dest/bzImage"
# vmlinux: the ELF inside the bzImage, which this kernel compresses with
# xz (or gzip or zstd, as extract-vmlinux finds them).
vmlinux() {
	local magic off
	for magic in '\xfd7zXZ\x00:xz -dc --single-stream' '\x28\xb5\x2f\xfd:zstd -q -dc' '\x1f\x8b\x08\x00:gzip -dc'; do
		for off in $(LC_ALL=C grep -obUaP "${magic%%:*}" "$tmp/dest/bzImage" | cut -d: -f1); do
			tail -c +$((off + 1)) "$tmp/dest/bzImage" | ${magic#*:} >"$tmp/dest/vmlinux" 2>/dev/null || true
			if [ "$(head -c 4 "$tmp/dest/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
				return 0
			fi
		done
	done
	echo "build.sh: no ELF found in the bzImage of $kpkg" >&2
	exit 1
}
vmlinux
echo "$kpkg $kver, busybox-static $bver; modules: $(tr '\n' ' ' <"$root/modules/order")" >"$tmp/dest/versions"

mkdir -p "$out"
# Older builds (their directories hold a versions file) are 75 MB each.
for old in "$out"/*/versions; do
	[ -f "$old" ] && rm -rf "$(dirname "$old")"
done
rm -rf "$dest"
mv "$tmp/dest" "$dest"
echo "$dest"
