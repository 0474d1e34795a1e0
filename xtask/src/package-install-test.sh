# The tollgate package's install test, run by `cargo xtask package` as root inside a private
# mount namespace (`unshare --mount --propagation private`): every mount made here disappears
# with the namespace when this script exits, however it exits.
#
# The throwaway root is a copy-on-write clone of this Debian host: an overlay whose lower
# layer is / (read-only) and whose upper layer is a tmpfs, with a fresh /run (so no systemd
# appears to be running, as in a chroot), /proc and the host's /dev. Nothing written inside
# reaches the host. In it: install revision 1 with apt (the documented `apt install ./...`),
# check what the maintainer scripts did, write an operator configuration, upgrade to
# revision 2, check the configuration survived, run `tollgate version` from /usr/bin, then
# remove and purge.
#
# Arguments: a scratch directory (empty, on the host) and the .deb. The upgrade installs the
# same package repacked with the next revision (`dpkg-deb -R`, Version bumped, `dpkg-deb -b`).
set -eu

work=$1
deb1=$2

say() { printf '    [install test] %s\n' "$*"; }
fail() { printf '    [install test] FAILED: %s\n' "$*" >&2; exit 1; }

mount -t tmpfs -o size=2g,mode=0755 tollgate-pkgtest "$work"
mkdir "$work/upper" "$work/overlay-work" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/overlay-work" "$work/root"
R=$work/root
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755 run "$R/run"
mount -t tmpfs -o mode=1777 tmp "$R/tmp"
cp "$deb1" "$R/tmp/"
d1=/tmp/$(basename "$deb1")
dpkg-deb -R "$deb1" "$work/repack"
v1=$(sed -n 's/^Version: //p' "$work/repack/DEBIAN/control")
v2=${v1%-*}-$(( ${v1##*-} + 1 ))
sed -i "s/^Version: .*/Version: $v2/" "$work/repack/DEBIAN/control"
d2=/tmp/tollgate_${v2}_upgrade.deb
dpkg-deb -Zgzip -z1 --build "$work/repack" "$R$d2" >/dev/null

in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

[ -x "$R/usr/bin/apt-get" ] && [ -x "$R/usr/bin/dpkg" ] \
    || fail "no apt-get/dpkg in the overlay of / (is /usr a separate filesystem?)"
[ ! -e "$R/run/systemd/system" ] || fail "systemd appears to run inside the throwaway root"
if in_root dpkg-query -W -f='${Status}' tollgate 2>/dev/null | grep -q 'ok installed'; then
    fail "tollgate is already installed on this host; the test needs a root without it"
fi

say "apt-get install $d1 (fresh install, no systemd running)"
in_root apt-get install -y -q --no-install-recommends "$d1" >"$work/apt1.log" 2>&1 \
    || { cat "$work/apt1.log"; fail "install"; }

say "tollgate version (installed /usr/bin/tollgate):"
in_root /usr/bin/tollgate version | sed 's/^/        /'
in_root /usr/bin/tollgate version | head -n1 | grep -q '^tollgate ' || fail "tollgate version"

pw=$(in_root getent passwd tollgate) || fail "no user tollgate"
uid=$(echo "$pw" | cut -d: -f3)
shell=$(echo "$pw" | cut -d: -f7)
[ "$uid" -lt 1000 ] || fail "tollgate is not a system user (uid $uid)"
[ "$shell" = /usr/sbin/nologin ] || fail "tollgate has a login shell: $shell"
say "user: $pw"
logdir=$(in_root stat -c '%U:%G %a' /var/log/tollgate) || fail "no /var/log/tollgate"
[ "$logdir" = "tollgate:tollgate 750" ] || fail "/var/log/tollgate is $logdir"
say "/var/log/tollgate: $logdir"
tls=$(in_root stat -c '%U:%G %a' /etc/tollgate/tls) || fail "no /etc/tollgate/tls"
[ "$tls" = "root:tollgate 750" ] || fail "/etc/tollgate/tls is $tls"
[ -f "$R/etc/tollgate/tollgate.toml.example" ] || fail "no example configuration"
[ ! -e "$R/etc/tollgate/tollgate.toml" ] || fail "the package wrote tollgate.toml"
in_root dpkg-query -W -f='${Conffiles}\n' tollgate | grep -q '^ /etc/tollgate/tollgate.toml.example ' \
    || fail "the example configuration is not a conffile"
[ -L "$R/etc/systemd/system/multi-user.target.wants/tollgate.service" ] \
    || fail "the unit was not enabled"
grep -q '^ExecStart=/usr/bin/tollgate run' "$R/usr/lib/systemd/system/tollgate.service" \
    || fail "the unit does not run /usr/bin/tollgate"
if [ -x "$R/usr/bin/systemd-analyze" ]; then
    in_root systemd-analyze verify /usr/lib/systemd/system/tollgate.service \
        || fail "systemd-analyze verify tollgate.service"
    say "systemd-analyze verify tollgate.service: ok"
else
    say "systemd-analyze verify: not run (no systemd-analyze on this host)"
fi
[ -s "$R/var/lib/dpkg/info/tollgate.md5sums" ] || fail "dpkg wrote no md5sums"
in_root dpkg --verify tollgate || fail "dpkg --verify"
say "unit enabled (not started: no systemd), conffile and md5sums in place"

say "operator writes /etc/tollgate/tollgate.toml; apt-get install $d2 (upgrade)"
cp "$R/etc/tollgate/tollgate.toml.example" "$R/etc/tollgate/tollgate.toml"
echo '# edited by the operator' >>"$R/etc/tollgate/tollgate.toml"
before=$(md5sum <"$R/etc/tollgate/tollgate.toml")
in_root apt-get install -y -q --no-install-recommends "$d2" >"$work/apt2.log" 2>&1 \
    || { cat "$work/apt2.log"; fail "upgrade"; }
v=$(in_root dpkg-query -W -f='${Version}' tollgate)
say "installed version now $v"
[ "$(md5sum <"$R/etc/tollgate/tollgate.toml")" = "$before" ] || fail "the upgrade changed tollgate.toml"
[ "$(in_root getent passwd tollgate)" = "$pw" ] || fail "the upgrade changed the user"
in_root /usr/bin/tollgate version >/dev/null || fail "tollgate version after the upgrade"

say "apt-get remove, then dpkg --purge"
in_root apt-get remove -y -q tollgate >"$work/apt3.log" 2>&1 || { cat "$work/apt3.log"; fail "remove"; }
[ ! -e "$R/usr/bin/tollgate" ] || fail "remove left /usr/bin/tollgate"
[ -f "$R/etc/tollgate/tollgate.toml.example" ] || fail "remove deleted a conffile"
in_root dpkg --purge tollgate >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "purge"; }
[ ! -e "$R/var/log/tollgate" ] || fail "purge left /var/log/tollgate"
[ ! -e "$R/etc/tollgate/tollgate.toml.example" ] || fail "purge left the example configuration"
[ -f "$R/etc/tollgate/tollgate.toml" ] || fail "purge deleted the operator's tollgate.toml"
[ ! -e "$R/etc/systemd/system/multi-user.target.wants/tollgate.service" ] || fail "purge left the unit enabled"
say "removed and purged: logs gone, the operator's tollgate.toml and the user kept"
say "ok"
