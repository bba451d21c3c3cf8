import { JOIN_DIR, LOCK_FILE, SIGNATURE_FILE, STATEMENT_FILE, SUMS_FILE, TOP_LEVEL_FILES } from '../../bundle/layout.js'
import { keyFingerprint } from '../../bundle/signing.js'

/** The standalone verifier's file name: the operator keeps it on the air-gapped side. */
export const VERIFIER_NAME = 'kube-airgap-verify'

/** Characters a bundle path may hold: anything else (a newline, a quote, a glob) is refused. */
const SAFE_CHARS = 'A-Za-z0-9._+~%:@=,/-'

/**
 * The standalone verifier: one POSIX sh script with the public key embedded, run with what
 * every supported node has (GNU tar, coreutils' sha256sum, OpenSSL 3 for Ed25519). It is the
 * trust root on the air-gapped side: it comes through the operator's own channel, never from
 * the stick, and checks a bundle before anything from the stick runs.
 *
 * It judges what GNU tar itself will make of the tar, not what our own tar reader sees: one
 * `tar -xvv --to-command` pass lists every member as GNU tar will make it (type letter, mode,
 * owner, name) while each regular file is hashed, so only regular files and folders owned by
 * root, with no setuid, setgid, sticky or group/other-write bit, each path once whatever its
 * trailing slash, pass. Names are matched as fixed strings, and everything printed has every
 * byte outside printable ASCII shown as `?`. With --extract it unpacks into a private folder
 * beside the destination, checks that it holds exactly the bundle folder and that what landed
 * is what was signed, and only then moves it into place: the bytes that run are the bytes
 * that were checked even on a stick that answers a second read differently.
 *
 * It does not trust SHA256SUMS, the lock or anything else until the signature over the
 * statement holds; the statement then binds SHA256SUMS (and so every file) and the lock.
 */
export function verifierScript(publicKeyPem: string): string {
  const fingerprint = keyFingerprint(publicKeyPem)
  const owned = TOP_LEVEL_FILES.map((f) => ` -e '${f}'`).join('')
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
# Bytes, not characters: names compare, sort and print the same everywhere, and GNU tar
# escapes every byte outside printable ASCII in what it lists. The operator's tar options
# never change what is checked or unpacked.
LC_ALL=C
export LC_ALL
unset TAR_OPTIONS TAPE
KEY_FINGERPRINT='${fingerprint}'
PUBLIC_KEY='${publicKeyPem.trim()}'

me=${VERIFIER_NAME}
# Everything printed goes through here: a name from the stick never acts on the terminal and
# never starts a line of its own (every byte outside printable ASCII is shown as ?).
say() { printf '%s' "$*" | tr -c ' -~' '?'; printf '\\n'; }
die() { say "$me: $*" >&2; exit 1; }
usage() { say "$me: $*" >&2; echo "usage: $me BUNDLE.tar | NAME.parts.sha256 | FOLDER | --extract DIR BUNDLE.tar" >&2; exit 2; }

for tool in tar sha256sum openssl sort comm find sed grep tr id mktemp; do
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

xtmp=
work=$(mktemp -d) || die "cannot make a temporary folder"
trap 'rm -rf "$work"; [ -z "$xtmp" ] || rm -rf "$xtmp"' EXIT
trap 'exit 1' HUP INT TERM
printf '%s\\n' "$PUBLIC_KEY" > "$work/key.pem"
got=$(openssl pkey -pubin -in "$work/key.pem" -outform DER 2>/dev/null | sha256sum | cut -c1-64)
[ "sha256:$got" = "$KEY_FINGERPRINT" ] || die "the embedded key does not match its fingerprint: this verifier was changed; get it again from who built the bundle"

safe_names() { # every line of $1 is a plain relative path (a folder's may end in /)
  if grep -qvE '^[${SAFE_CHARS}]+$' "$1" || grep -qE '(^|/)\\.\\.?(/|$)|^/|//' "$1"; then return 1; fi
  return 0
}
# The folders a bundle's files sit in: every parent of every listed path.
parents() {
  sed -n 's|/[^/]*$||p' "$1" > "$work/up"
  while [ -s "$work/up" ]; do
    cat "$work/up"
    sed -n 's|/[^/]*$||p' "$work/up" > "$work/up2"
    mv "$work/up2" "$work/up"
  done | sort -u
}

# The bundle as a stream: a tar, or split parts each checked against their parts file first.
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
    while read -r p; do [ -f "$pdir/$p" ] && [ ! -L "$pdir/$p" ] || die "$pdir/$p: not a regular file"; done < "$work/partlist"
    parts=yes
    target="$pdir/$whole"
    ;;
esac
# Part names are plain (checked above), so the list can be word-split; the folder is quoted.
stream_tar() { if [ -n "$parts" ]; then (cd "$pdir" && cat $(cat "$work/partlist")); else cat "$target"; fi; }

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
  # The folders a genuine bundle has: its own, and those its files sit in.
  { echo .; parents "$work/listed"; } | sort -u > "$work/folders"
}

# Compares "sha256  path" lines found ($work/found, sorted) with what was signed.
compare() {
  missing=$(comm -23 "$work/want" "$work/found" | head -n 1)
  [ -z "$missing" ] || die "$name: \${missing#*  }: missing or changed (not what was signed); do not install it"
  sed 's/^[0-9a-f]\\{64\\}  //' "$work/found" | grep -vxF -e '${SUMS_FILE}' -e '${STATEMENT_FILE}' -e '${SIGNATURE_FILE}' | sort > "$work/foundnames"
  sort "$work/listed" > "$work/listednames"
  extra=$(comm -23 "$work/foundnames" "$work/listednames" | head -n 1)
  [ -z "$extra" ] || die "$name: $extra: not listed in ${SUMS_FILE}, not part of what was signed; do not install it"
}

# Folders ($1: one relative path a line, "." for the bundle's own) that no genuine bundle has.
check_folders() {
  extra=$(sort -u "$1" | comm -23 - "$work/folders" | head -n 1)
  [ -z "$extra" ] || die "$name: $extra/: a folder no file of the bundle is in, not part of what was signed; do not install it"
}

report() {
  say "ok: $name: signed by $KEY_FINGERPRINT"
  say "    kubernetes $st_kubernetes, $st_platform, lock $st_lock, $(wc -l < "$work/want" | tr -d ' ') files as signed"
}

# $1: the folder; $2: "unpacked" for a folder this verifier just unpacked (nothing of the
# operator's may be in it, and no join/).
check_folder() {
  dir=$1
  name=$(basename "$(cd "$dir" && pwd)")
  (cd "$dir" && find . -name '*[[:cntrl:]]*' -print0 | tr '\\n\\0' '?\\n' | sed 's|^\\./||') > "$work/cntrl"
  [ ! -s "$work/cntrl" ] || die "$name: $(head -n 1 "$work/cntrl"): a name with a control character (a newline, say), which no bundle has; do not install it"
  odd=$(cd "$dir" && find . ! -type f ! -type d | head -n 1)
  [ -z "$odd" ] || die "$name: \${odd#./}: not a regular file (links and devices are never part of a bundle); do not install it"
  check_signed "$dir"
  (cd "$dir" && find . -type f | sed 's|^\\./||' | grep -v '^${JOIN_DIR}/' | sort) > "$work/all"
  # The operator's own files at the top (not listed, and no name a bundle uses): not part of
  # the bundle, ignored, never read as part of it. In a folder just unpacked there are none.
  : > "$work/ignored"
  if [ "\${2:-}" != unpacked ]; then
    sort "$work/listed" | comm -23 "$work/all" - | grep -v / | grep -vxF${owned} > "$work/ignored" || true
  fi
  grep -vxFf "$work/ignored" "$work/all" > "$work/files" || true
  safe_names "$work/files" || die "$name: a file name with characters no bundle uses; do not install it"
  # Modes and owners as the node will use them: no setuid, setgid or sticky bit, nothing
  # others may write, no second name for a file, and owned by root (or by whoever checks).
  me_uid=$(id -u)
  (cd "$dir" && find . \\( -perm /7022 -o \\( ! -user 0 ! -user "$me_uid" \\) -o \\( -type f -links +1 \\) \\) -print) \\
    | sed 's|^\\./||' | grep -vxFf "$work/ignored" > "$work/modes" || true
  bad=$(head -n 1 "$work/modes")
  if [ -n "$bad" ]; then
    how=$(cd "$dir" && find "./$bad" -maxdepth 0 -printf 'mode %m, owner %u, %n names')
    [ "$bad" != . ] || bad="the bundle folder"
    die "$name: $bad: $how: setuid, setgid, sticky, writable by others, owned by someone else or linked twice; do not install it (unpack it as root with $me --extract)"
  fi
  (cd "$dir" && find . -type d | sed 's|^\\./||' | grep -vx '${JOIN_DIR}') > "$work/dirs"
  [ "\${2:-}" != unpacked ] || ! grep -qx '${JOIN_DIR}' "$work/dirs" || die "$name: a bundle tar never holds ${JOIN_DIR}/ (join files are made on a node); do not install it"
  check_folders "$work/dirs"
  (cd "$dir" && xargs sha256sum -- < "$work/files") > "$work/found.raw" || die "$name: a file could not be read to the end (sha256sum failed); copy it again"
  sort "$work/found.raw" > "$work/found"
  compare
}

folder_notes() {
  while read -r f; do
    say "note: $f: not part of the bundle (your own file beside it?): ignored, never read as part of the bundle"
  done < "$work/ignored"
  (cd "$dir" && find ${JOIN_DIR} -type f 2>/dev/null) | while read -r j; do
    say "note: $j: written on a node, not covered by the bundle's signature; check the endpoint it names before a node trusts it"
  done
}

# One read of the tar: GNU tar lists every member as it will make it (its type letter, mode,
# owner and name) while each regular file's bytes go to sha256sum; the four small files are kept.
check_tar() {
  label=$(basename "$target")
  mkdir "$work/small" "$work/none"
  : > "$work/found.raw"
  stream_tar | KAV_SMALL="$work/small" KAV_FOUND="$work/found.raw" tar -xvvf - -C "$work/none" --numeric-owner --full-time --to-command='
    case "$TAR_FILENAME" in
      */*/*) sum=$(sha256sum) ;;
      */${SUMS_FILE}|*/${STATEMENT_FILE}|*/${SIGNATURE_FILE}|*/${LOCK_FILE}) sum=$(tee "$KAV_SMALL/\${TAR_FILENAME##*/}" | sha256sum) ;;
      *) sum=$(sha256sum) ;;
    esac
    printf "%s  %s\\n" "\${sum%% *}" "$TAR_FILENAME" >> "$KAV_FOUND"' > "$work/listing" 2>"$work/tarerr"
  tar_status=$?
  [ -s "$work/listing" ] || die "$label: not a readable tar ($(head -n 1 "$work/tarerr")); copy it again"
  # Only folders and regular files, owned by root, with no setuid, setgid or sticky bit and
  # nothing others may write; anything else is named with what GNU tar would make of it.
  sed -e 's#^\\([-d]\\)[-r][-w][-x][-r]-[-x][-r]-[-x] 0/0 \\{1,\\}[0-9]\\{1,\\} [0-9]\\{4,\\}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] \\(.*\\)$#\\1 \\2#' \\
      -e t -e 's#^#? #' "$work/listing" > "$work/members"
  bad=$(sed -n 's/^? //p' "$work/members" | head -n 1)
  if [ -n "$bad" ]; then
    what=$(printf '%s\\n' "$bad" | sed -E 's/^([^ ]+ +){5}//')
    case "$bad" in
      l*) kind="not a regular file (a symbolic link to \${what#* -> }; links and devices are never part of a bundle)" ;;
      h*) kind="not a regular file (a hard link to \${what#* link to }; links and devices are never part of a bundle)" ;;
      c*|b*|p*) kind="not a regular file (a device or FIFO; links and devices are never part of a bundle)" ;;
      [-d]*)
        mode=\${bad%% *}; owner=\${bad#* }; owner=\${owner%% *}
        case "$owner:$mode" in
          0/0:?[-r][-w][-x][-r]-[-x][-r]-[-x]) kind="listed by GNU tar in a form no bundle has (its time?)" ;;
          0/0:*) kind="mode $mode: setuid, setgid, sticky or writable by others, which no file of a bundle is" ;;
          *) kind="owned by $owner (uid/gid), not by root as every file of a bundle is" ;;
        esac ;;
      *) kind="not a regular file (tar type '$(printf '%s' "$bad" | cut -c1)', which no bundle has)" ;;
    esac
    case "$bad" in l*) what=\${what%% -> *} ;; h*) what=\${what%% link to *} ;; esac
    die "$label: $what: $kind; do not unpack it"
  fi
  cut -c3- "$work/members" > "$work/names"
  safe_names "$work/names" || die "$label: $(grep -vE '^[${SAFE_CHARS}]+$' "$work/names" | head -n 1): a member name that is absolute, has .. or characters no bundle uses; do not unpack it"
  # GNU tar makes "x/" and "x" the same path: a name may appear once, with or without its slash.
  sed 's|/*$||' "$work/names" > "$work/paths"
  dup=$(sort "$work/paths" | uniq -d | head -n 1)
  [ -z "$dup" ] || die "$label: $dup appears twice (GNU tar would make the second over the first); do not unpack it"
  name=$(head -n 1 "$work/paths" | cut -d/ -f1)
  extra=$(cut -d/ -f1 "$work/paths" | grep -vxF -e "$name" | head -n 1)
  [ -z "$extra" ] || die "$label: $extra: outside the bundle's one top folder $name/; do not unpack it"
  # Relative to the top folder, "." for the top folder itself.
  sed -n 's|^d \\([^/]*\\)/*$|.|p; s|^d [^/]*/\\(.*[^/]\\)/*$|\\1|p' "$work/members" > "$work/dirs"
  sed -n 's|^- [^/]*/||p' "$work/members" | sort > "$work/regular"
  grep -q '^${JOIN_DIR}\\(/\\|$\\)' "$work/regular" "$work/dirs" && die "$name: a bundle tar never holds ${JOIN_DIR}/ (join files are made on a node); do not unpack it"
  [ "$tar_status" -eq 0 ] || die "$label: GNU tar refuses part of it ($(grep -v 'Removing leading' "$work/tarerr" | head -n 1)); do not unpack it (a damaged copy: copy it again)"
  sed 's|^\\([0-9a-f]\\{64\\}  \\)[^/]*/|\\1|' "$work/found.raw" | sort > "$work/found"
  sed 's/^[0-9a-f]\\{64\\}  //' "$work/found" | sort > "$work/hashed"
  [ -z "$(comm -3 "$work/hashed" "$work/regular" | head -n 1)" ] \\
    || die "$label: GNU tar listed other regular files than it unpacked; do not unpack it"
  check_signed "$work/small"
  compare
  check_folders "$work/dirs"
}

if [ -n "$extract" ]; then
  [ -d "$extract" ] || usage "--extract $extract: no such folder"
  check_tar
  dest="$extract/$name"
  [ ! -e "$dest" ] && [ ! -L "$dest" ] || die "$dest exists already; move it away or give another folder"
  # Unpacked into a private folder beside the destination, checked there, then moved into
  # place: the bytes that run are the bytes checked, and nothing else lands anywhere.
  xtmp=$(mktemp -d "$extract/.$me.XXXXXX") || die "cannot make a temporary folder in $extract"
  stream_tar | tar -xf - -C "$xtmp" --no-same-owner --no-same-permissions --no-overwrite-dir 2>"$work/tarerr" \\
    || die "$name: unpacking failed ($(head -n 1 "$work/tarerr")); nothing was kept"
  there=$(cd "$xtmp" && ls -A)
  [ "$there" = "$name" ] || die "$name: the second read of the tar unpacked more than $name/ (the medium answered differently the second time); nothing was kept"
  check_folder "$xtmp/$name" unpacked
  [ ! -e "$dest" ] && [ ! -L "$dest" ] || die "$dest appeared while the bundle was checked; nothing was kept"
  mv "$xtmp/$name" "$dest" || die "cannot move the checked bundle to $dest; nothing was kept"
  report
  say "unpacked: $dest"
elif [ -d "$target" ]; then
  check_folder "$target"
  report
  folder_notes
else
  [ -n "$parts" ] || [ -f "$target" ] || usage "$target: not a bundle tar, parts file or folder"
  check_tar
  report
fi
`
}
