import type { Arch } from './platform.js'
import { INSTALLER_FILE, RUNTIME_NODE, SUMS_FILE } from './layout.js'

/**
 * The bundle's `install`: the only file a user runs. POSIX sh, so it works before anything
 * is known about the node: it refuses the wrong CPU and a glibc too old for Node.js 24,
 * checks the runtime and the installer against SHA256SUMS with coreutils, and only then
 * runs them. Each refusal is one line.
 */
/** The distributions whose glibc the bundled runtime runs on, as the refusal names them. */
export const SUPPORTED = 'Ubuntu 20.04+, Debian 10+, Rocky Linux and AlmaLinux 8+, openEuler 22.03+, Kylin V10'

export function installScript(arch: Arch): string {
  return `#!/bin/sh
# kube-airgap: checks this machine against the bundle, then runs the installer.
# Usage: sudo ./install --role master|worker [options]   (./install --help for more)
set -eu
# The bundle folder, also when this script is reached through a link; the caller's folder
# stays the working folder, so relative paths in the arguments mean what they say.
self=$(readlink -f "$0" 2>/dev/null || printf '%s' "$0")
here=$(cd "$(dirname "$self")" && pwd)
bundle_arch=${arch}
case "$(uname -m)" in
  x86_64|amd64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
if [ "$arch" != "$bundle_arch" ]; then
  echo "install: this bundle is for linux/$bundle_arch but this machine is $(uname -m) ($arch): use the linux/$arch bundle (bundle build --platform linux/$arch)" >&2
  exit 2
fi
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')
system=$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | head -n 1 | tr -d '"' | tr -cd '[:print:]')
supported="${SUPPORTED}"
if [ -z "$glibc" ]; then
  printf '%s\\n' "install: \${system:-this system} has no glibc (musl systems such as Alpine are not supported): the bundled Node.js 24 needs glibc 2.28 or newer; supported: $supported" >&2
  exit 2
fi
major=\${glibc%%.*}
minor=\${glibc#*.}
minor=\${minor%%.*}
if [ "$major" -lt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -lt 28 ]; }; then
  printf '%s\\n' "install: \${system:-this system} has glibc $glibc, too old: the bundled Node.js 24 needs glibc 2.28 or newer; supported: $supported" >&2
  exit 2
fi
if ! (cd "$here" && grep -E '  (${RUNTIME_NODE.replaceAll('.', '\\.')}|${INSTALLER_FILE.replaceAll('.', '\\.')})$' ${SUMS_FILE} 2>/dev/null | sha256sum -c --strict --status 2>/dev/null) \\
   || [ "$(cd "$here" && grep -cE '  (${RUNTIME_NODE.replaceAll('.', '\\.')}|${INSTALLER_FILE.replaceAll('.', '\\.')})$' ${SUMS_FILE})" -ne 2 ]; then
  echo "install: ${RUNTIME_NODE} or ${INSTALLER_FILE} does not match ${SUMS_FILE}: the bundle is damaged; copy it again (sha256sum -c the .tar.sha256 first)" >&2
  exit 1
fi
exec "$here/${RUNTIME_NODE}" "$here/${INSTALLER_FILE}" "$@"
`
}
