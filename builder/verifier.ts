import { JOIN_DIR, LOCK_FILE, SIGNATURE_FILE, STATEMENT_FILE, SUMS_FILE, TOP_LEVEL_FILES } from '../bundle/layout.js'
import { keyFingerprint } from '../bundle/signing.js'

/** The standalone verifier's file name: the operator keeps it on the air-gapped side. */
export const VERIFIER_NAME = 'kube-airgap-verify'

/** Characters a bundle path may hold: anything else (a newline, a quote, a glob) is refused. */
const SAFE_CHARS = 'A-Za-z0-9._+~%:@=,/-'

/**
 * The standalone verifier: one POSIX sh script with the public key embedded, run with what
 * every supported node has (GNU tar, coreutils' sha256sum, OpenSSL 3 for Ed25519). It is the
 * trust root on the air-gapped side: it comes through the operator's own channel, never from
 * the stick, and checks a bundle before anything from the stick runs. It checks what GNU tar
 * itself will unpack (not what our own tar reader sees), and with --extract it unpacks first
 * and then checks the unpacked folder, so the bytes that run are the bytes that were checked
 * even on a stick that answers a second read differently.
 *
 * It does not trust SHA256SUMS, the lock or anything else until the signature over the
 * statement holds; the statement then binds SHA256SUMS (and so every file) and the lock.
 */
export function verifierScript(publicKeyPem: string): string {
  const fingerprint = keyFingerprint(publicKeyPem)
  const outside = [SUMS_FILE, STATEMENT_FILE, SIGNATURE_FILE].join('|')
  const owned = TOP_LEVEL_FILES.map((f) => f.replaceAll('.', '\\.')).join('|')
  return `#!/bin/sh
# ${VERIFIER_NAME}: checks a kube-airgap bundle against one signing key, before anything from
# the bundle runs. Made by \`bundle keygen\`; keep it where the bundle cannot change it (for
# example /usr/local/sbin). It needs GNU tar, sha256sum and OpenSSL 3.
#
#   ${VERIFIER_NAME} BUNDLE.tar                  check a bundle tar
#   ${VERIFIER_NAME} NAME.parts.sha256           check split parts (or NAME.tar.000)
#   ${VERIFIER_NAME} FOLDER                      check an unpacked bundle folder
#   ${VERIFIER_NAME} --extract DIR BUNDLE.tar    unpack into DIR/<name>, then check what was unpacked
#
# Exit 0: signed by the key below, every file as signed. Exit 1: do not install it. Exit 2: usage.
set -u
KEY_FINGERPRINT='${fingerprint}'
PUBLIC_KEY='${publicKeyPem.trim()}'

me=${VERIFIER_NAME}
die() { echo "$me: $*" >&2; exit 1; }
usage() { echo "$me: $*" >&2; echo "usage: $me BUNDLE.tar | NAME.parts.sha256 | FOLDER | --extract DIR BUNDLE.tar" >&2; exit 2; }

for tool in tar sha256sum openssl sort comm find sed; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed; it is needed to check the bundle"
done
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is needed (tar --version does not say GNU tar)"
ossl=$(openssl version 2>/dev/null)
case "$ossl" in
  "OpenSSL "[3-9].*) ;;
  *) die "$ossl cannot check Ed25519 signatures (OpenSSL 3 or newer is needed); check the bundle on a machine that has it" ;;
esac

extract=
case "\${1:-}" in
  --extract) [ $# -eq 3 ] || usage "--extract takes a folder and a bundle"; extract=$2; shift 2 ;;
  -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
esac
[ $# -eq 1 ] || usage "give one bundle"
target=$1
[ -e "$target" ] || usage "$target: no such file or folder"

work=$(mktemp -d) || die "cannot make a temporary folder"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
printf '%s\\n' "$PUBLIC_KEY" > "$work/key.pem"
got=$(openssl pkey -pubin -in "$work/key.pem" -outform DER 2>/dev/null | sha256sum | cut -c1-64)
[ "sha256:$got" = "$KEY_FINGERPRINT" ] || die "the embedded key does not match its fingerprint: this verifier was changed; get it again from who built the bundle"

safe_names() { # every line of $1 is a plain relative path
  if grep -qvE '^[${SAFE_CHARS}]+$' "$1" || grep -qE '(^|/)\\.\\.?(/|$)|^/|//' "$1"; then return 1; fi
  return 0
}

# The bundle as a stream: a tar, or split parts each checked against their parts file first.
stream() { cat "$@"; }
parts=
case "$target" in
  *.parts.sha256|*.tar.[0-9][0-9][0-9])
    case "$target" in *.parts.sha256) pf=$target ;; *) pf="\${target%.tar.[0-9][0-9][0-9]}.parts.sha256" ;; esac
    [ -f "$pf" ] || die "$pf: no parts file beside the parts"
    pdir=$(dirname "$pf")
    sed -n 's/^[0-9a-f]\\{64\\}  //p' "$pf" > "$work/partnames"
    [ -s "$work/partnames" ] || die "$pf: not a parts file"
    grep -qvE '^[A-Za-z0-9._+-]+\\.tar(\\.[0-9]{3})?$' "$work/partnames" && die "$pf: names a file that is not a part of this bundle"
    whole=$(tail -n 1 "$work/partnames")
    sed '$d' "$work/partnames" > "$work/partlist"
    (cd "$pdir" && sed '$d' "$(basename "$pf")" | sha256sum -c --strict --quiet - >/dev/null 2>&1) || die "$pf: a part is missing or changed (sha256sum -c $(basename "$pf") names it); copy the parts again"
    parts=$(sed "s|^|$pdir/|" "$work/partlist" | tr '\\n' ' ')
    for p in $parts; do [ -f "$p" ] && [ ! -L "$p" ] || die "$p: not a regular file"; done
    target="$pdir/$whole"
    ;;
esac

# Checks a signed statement and the SHA256SUMS and lock it binds, all in $1.
check_signed() {
  d=$1
  for f in ${STATEMENT_FILE} ${SIGNATURE_FILE} ${SUMS_FILE} ${LOCK_FILE}; do
    [ -f "$d/$f" ] || die "$name: no $f: the bundle is not signed (or not a bundle); do not install it"
  done
  openssl pkeyutl -verify -pubin -inkey "$work/key.pem" -rawin -in "$d/${STATEMENT_FILE}" -sigfile "$d/${SIGNATURE_FILE}" >/dev/null 2>&1 \\
    || die "$name: the signature does not match key $KEY_FINGERPRINT; do not install it: get the bundle again from who built it"
  field() { sed -n "s/^  \\"$1\\": \\"\\([^\\"]*\\)\\",\\{0,1\\}$/\\1/p" "$d/${STATEMENT_FILE}"; }
  st_bundle=$(field bundle); st_sums=$(field sha256sums); st_lock=$(field lock)
  st_kubernetes=$(field kubernetes); st_platform=$(field platform)
  [ "$st_bundle" = "$name" ] || die "$name: the signed statement is for $st_bundle, not for this bundle; do not install it"
  [ "$st_sums" = "sha256:$(sha256sum < "$d/${SUMS_FILE}" | cut -c1-64)" ] || die "$name: ${SUMS_FILE} is not the one that was signed; do not install it"
  [ "$st_lock" = "sha256:$(sha256sum < "$d/${LOCK_FILE}" | cut -c1-64)" ] || die "$name: ${LOCK_FILE} is not the one that was signed; do not install it"
  sed 's/^[0-9a-f]\\{64\\}  //' "$d/${SUMS_FILE}" > "$work/listed"
  grep -qvE '^[0-9a-f]{64}  ' "$d/${SUMS_FILE}" && die "$name: ${SUMS_FILE} has a line that is not 'sha256  path'"
  safe_names "$work/listed" || die "$name: ${SUMS_FILE} names an unsafe path"
  sort "$d/${SUMS_FILE}" > "$work/want"
}

# Compares "sha256  path" lines found ($work/found, sorted) with what was signed.
compare() {
  missing=$(comm -23 "$work/want" "$work/found" | head -n 1)
  [ -z "$missing" ] || die "$name: \${missing#*  }: missing or changed (not what was signed); do not install it"
  sed 's/^[0-9a-f]\\{64\\}  //' "$work/found" | grep -vxE '${outside}' | sort > "$work/foundnames"
  sort "$work/listed" > "$work/listednames"
  extra=$(comm -23 "$work/foundnames" "$work/listednames" | head -n 1)
  [ -z "$extra" ] || die "$name: $extra: not listed in ${SUMS_FILE}, not part of what was signed; do not install it"
}

report() {
  echo "ok: $name: signed by $KEY_FINGERPRINT"
  echo "    kubernetes $st_kubernetes, $st_platform, lock $st_lock, $(wc -l < "$work/want" | tr -d ' ') files as signed"
}

check_folder() {
  dir=$1
  name=$(basename "$(cd "$dir" && pwd)")
  odd=$(cd "$dir" && find . ! -type f ! -type d | head -n 1)
  [ -z "$odd" ] || die "$name: \${odd#./}: not a regular file (links and devices are never part of a bundle); do not install it"
  check_signed "$dir"
  (cd "$dir" && find . -type f | sed 's|^\\./||' | grep -v '^${JOIN_DIR}/' | sort) > "$work/all"
  # The operator's own files at the top (not listed, and no name a bundle uses): not part of
  # the bundle, ignored, never read as part of it.
  sort "$work/listed" | comm -23 "$work/all" - | grep -v / | grep -vxE '${owned}' > "$work/ignored" || true
  grep -vxFf "$work/ignored" "$work/all" > "$work/files" || true
  safe_names "$work/files" || die "$name: a file name with characters no bundle uses; do not install it"
  (cd "$dir" && xargs sha256sum -- < "$work/files") | sort > "$work/found"
  compare
  report
  while read -r f; do
    echo "note: $f: not part of the bundle (your own file beside it?): ignored, never read as part of the bundle"
  done < "$work/ignored"
  (cd "$dir" && find ${JOIN_DIR} -type f 2>/dev/null) | while read -r j; do
    echo "note: $j: written on a node, not covered by the bundle's signature; check the endpoint it names before a node trusts it"
  done
}

check_tar() {
  src=$1
  stream_tar() { if [ -n "$parts" ]; then stream $parts; else cat "$src"; fi; }
  stream_tar | tar -tf - > "$work/names" 2>"$work/tarerr" || die "$(basename "$src"): not a readable tar ($(head -n 1 "$work/tarerr")); copy it again"
  safe_names "$work/names" || die "$(basename "$src"): a member name that is absolute, has .. or characters no bundle uses; do not unpack it"
  dup=$(sort "$work/names" | uniq -d | head -n 1)
  [ -z "$dup" ] || die "$(basename "$src"): $dup appears twice; do not unpack it"
  name=$(head -n 1 "$work/names" | cut -d/ -f1)
  grep -qvE "^$name(/|$)" "$work/names" && die "$(basename "$src"): more than one top folder; do not unpack it"
  grep -q "^$name/${JOIN_DIR}/" "$work/names" && die "$name: a bundle tar never holds ${JOIN_DIR}/ (join files are made on a node); do not unpack it"
  mkdir "$work/small"
  # One pass: every regular file hashed as GNU tar reads it; the four small files kept.
  stream_tar | KAV_SMALL="$work/small" KAV_TOP="$name" tar -xf - --to-command='
    rel=\${TAR_FILENAME#"$KAV_TOP"/}
    case "$rel" in
      ${outside}|${LOCK_FILE}) sum=$(tee "$KAV_SMALL/$rel" | sha256sum) ;;
      *) sum=$(sha256sum) ;;
    esac
    printf "%s  %s\\n" "\${sum%% *}" "$rel"' > "$work/found.raw" 2>"$work/tarerr" || die "$name: the tar could not be read to the end ($(head -n 1 "$work/tarerr")); copy it again"
  sort "$work/found.raw" > "$work/found"
  # Whatever is neither a folder nor a hashed regular file is a link or a device.
  sed 's/^[0-9a-f]\\{64\\}  //' "$work/found" | sed "s|^|$name/|" | sort > "$work/regular"
  odd=$(grep -v '/$' "$work/names" | grep -vx "$name" | sort | comm -23 - "$work/regular" | head -n 1)
  [ -z "$odd" ] || die "$name: \${odd#"$name"/}: not a regular file (links and devices are never part of a bundle); do not unpack it"
  check_signed "$work/small"
  compare
  report
}

if [ -n "$extract" ]; then
  [ -d "$extract" ] || usage "--extract $extract: no such folder"
  check_tar "$target"
  dest="$extract/$name"
  [ ! -e "$dest" ] || die "$dest exists already; move it away or give another folder"
  # Unpack, then check what landed: the bytes that run are the bytes checked.
  if [ -n "$parts" ]; then stream $parts; else cat "$target"; fi | tar -xf - -C "$extract" --no-same-owner --no-same-permissions --no-overwrite-dir \\
    || { rm -rf "$dest"; die "$name: unpacking failed; nothing was kept"; }
  ( check_folder "$dest" ) || { rm -rf "$dest"; die "$name: what was unpacked is not what was signed (the medium answered differently the second time); nothing was kept"; }
  echo "unpacked: $dest"
elif [ -d "$target" ]; then
  check_folder "$target"
else
  [ -n "$parts" ] || [ -f "$target" ] || usage "$target: not a bundle tar, parts file or folder"
  check_tar "$target"
fi
`
}
