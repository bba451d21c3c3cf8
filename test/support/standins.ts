import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'

/**
 * firewall-cmd's permanent configuration as lines ("port 6443/tcp", "protocol 4", and for
 * another zone than the default one "trusted:source 10.244.0.0/16") in $KA_ROOT/.firewalld;
 * --reload copies it to the runtime one. One --zone a command line, as firewalld's src/firewall-cmd.in
 * parses it.
 */
const FIREWALL = `f="$KA_ROOT/.firewalld"; zone=""
for a in "$@"; do case "$a" in --zone=*) zone="\${a#--zone=}:" ;; esac; done
for a in "$@"; do
  case "$a" in
    --permanent|--zone=*) ;;
    --reload) mkdir -p "$f"; cat "$f/permanent" > "$f/runtime" 2>/dev/null ;;
    --query-*) item="$zone$(echo "\${a#--query-}" | sed 's/=/ /')"; grep -qxF "$item" "$f/permanent" 2>/dev/null || exit 1 ;;
    --add-*) mkdir -p "$f"; echo "$zone$(echo "\${a#--add-}" | sed 's/=/ /')" >> "$f/permanent" ;;
    --remove-*) item="$zone$(echo "\${a#--remove-}" | sed 's/=/ /')"; grep -vxF "$item" "$f/permanent" > "$f/permanent.new" 2>/dev/null; mv "$f/permanent.new" "$f/permanent" ;;
    *) echo "firewall-cmd stand-in: $a is not emulated" >&2; exit 2 ;;
  esac
done`

/**
 * Recording stand-ins for the host commands that cannot run in a test (systemd is not
 * PID 1 here, and the kernel is not ours to change): systemctl, modprobe, sysctl,
 * swapoff, and on an RPM-family root getenforce, setenforce and firewall-cmd. Each appends its command line to $KA_RECORD and emulates its effect under
 * $KA_ROOT (the node root the installer works in), so a second run can see what the first
 * did: enabled units, loaded modules, applied sysctls, swap turned off.
 */
const SCRIPTS: Record<string, string> = {
  systemctl: `state="$KA_ROOT/.systemctl"; mkdir -p "$state"
case "$1" in
  --version) echo "systemd 252 (kube-airgap test stand-in)" ;;
  is-enabled) if [ -e "$state/enabled.$2" ]; then echo enabled; exit 0; else echo disabled; exit 1; fi ;;
  is-active) if [ -e "$state/active.$2" ]; then echo active; exit 0; else echo inactive; exit 3; fi ;;
  enable|disable|start|restart|stop)
    verb=$1; shift; now=""; [ "$1" = "--now" ] && { now=1; shift; }
    for u in "$@"; do
      case "$verb" in
        enable) touch "$state/enabled.$u"; [ -n "$now" ] && touch "$state/active.$u" ;;
        disable) rm -f "$state/enabled.$u"; [ -n "$now" ] && rm -f "$state/active.$u" ;;
        # The kubelet runs the version installed now, or fails (and is not active).
        start|restart) if [ "$u" = kubelet ]; then
            if "$KA_ROOT/usr/local/bin/kubelet" --version > "$state/running.kubelet" 2>/dev/null; then touch "$state/active.$u"; else rm -f "$state/active.$u" "$state/running.kubelet"; fi
          else touch "$state/active.$u"; fi ;;
        stop) rm -f "$state/active.$u" ;;
      esac
    done ;;
esac`,
  modprobe: `mkdir -p "$KA_ROOT/proc"; echo "$1 16384 0 - Live 0x0000000000000000" >> "$KA_ROOT/proc/modules"`,
  sysctl: `if [ "$1" = "--system" ]; then
  cat "$KA_ROOT"/etc/sysctl.d/*.conf 2>/dev/null | sed -n 's/^\\([a-z0-9_.-]*\\) *= *\\(.*\\)$/\\1 \\2/p' | while read -r key value; do
    f="$KA_ROOT/proc/sys/$(echo "$key" | tr . /)"; mkdir -p "$(dirname "$f")"; echo "$value" > "$f"
  done
fi`,
  swapoff: `printf 'Filename\\t\\t\\t\\tType\\t\\tSize\\t\\tUsed\\t\\tPriority\\n' > "$KA_ROOT/proc/swaps"`,
  // SELinux (an RPM-family root has $KA_ROOT/.selinux/mode) and firewalld (running when systemctl says so).
  getenforce: `cat "$KA_ROOT/.selinux/mode" 2>/dev/null || echo Disabled`,
  setenforce: `mkdir -p "$KA_ROOT/.selinux"; case "$1" in 0) echo Permissive ;; 1) echo Enforcing ;; *) exit 1 ;; esac > "$KA_ROOT/.selinux/mode"`,
  'firewall-cmd': FIREWALL,
  'firewall-offline-cmd': FIREWALL,
  // restorecon(8) (policycoreutils): a file is labelled once restorecon saw it; one written
  // since (a new inode) has the folder's default label again. -n -v lists what it would relabel.
  restorecon: `l="$KA_ROOT/.selinux/labelled"; dry=""; paths=""
for a in "$@"; do case "$a" in -n) dry=1 ;; -*) ;; *) paths="$paths $a" ;; esac; done
for f in $(find $paths -type f 2>/dev/null | sort); do
  id="$f $(stat -c '%i %Y' "$f")"
  grep -qxF "$id" "$l" 2>/dev/null && continue
  if [ -n "$dry" ]; then echo "Would relabel $f from system_u:object_r:bin_t:s0 to system_u:object_r:container_runtime_exec_t:s0"
  else mkdir -p "$KA_ROOT/.selinux"; { grep -v "^$f " "$l" 2>/dev/null; echo "$id"; } > "$l.new"; mv "$l.new" "$l"; fi
done`,
}

export const STANDINS = Object.keys(SCRIPTS)

export async function writeStandins(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true })
  for (const [name, body] of Object.entries(SCRIPTS)) {
    const p = join(dir, name)
    await writeFile(
      p,
      `#!/bin/sh\n# kube-airgap test stand-in for ${name}: records, and emulates its effect under $KA_ROOT.\necho "${name} $*" >> "$KA_RECORD"\n${body}\nexit 0\n`,
    )
    await chmod(p, 0o755)
  }
  // Not a stand-in: the real openssl, which acts only on the files it is given (paths under the root), unrecorded.
  await writeFile(join(dir, 'openssl'), '#!/bin/sh\nexec /usr/bin/openssl "$@"\n', { mode: 0o755 })
  return dir
}

/** A node root as a fresh Ubuntu server looks to the installer: systemd running, swap on, modules not loaded. */
export async function freshNodeRoot(root: string): Promise<void> {
  await mkdir(join(root, 'run/systemd/system'), { recursive: true })
  await mkdir(join(root, 'proc/sys'), { recursive: true })
  await mkdir(join(root, 'etc'), { recursive: true })
  await writeFile(join(root, 'proc/modules'), 'ext4 1056768 1 - Live 0x0000000000000000\n')
  await writeFile(
    join(root, 'proc/swaps'),
    'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swap.img                               file\t\t4194300\t\t0\t\t-2\n',
  )
  await writeFile(join(root, 'etc/fstab'), '/dev/disk/by-uuid/1234 / ext4 defaults 0 1\n/swap.img\tnone\tswap\tsw\t0\t0\n')
  await writeFile(join(root, 'etc/resolv.conf'), 'nameserver 192.0.2.53\n')
}

/** The commands the stand-ins recorded that change something (queries like `systemctl is-active` do not). */
export const changing = (record: string[]): string[] =>
  record.filter(
    (l) =>
      !/^systemctl (is-enabled|is-active|--version)/.test(l) &&
      !/^kubeadm config (images list|validate) /.test(l) &&
      !/^kubectl --kubeconfig \S+ (-n \S+ )?(get|version) /.test(l) &&
      !/^kubectl --kubeconfig \S+ -n kube-system exec \S+ -- etcdctl .* member list /.test(l) &&
      !/^kubeadm (version|upgrade plan) /.test(l) &&
      !/^crictl --runtime-endpoint \S+ pods -q$/.test(l) &&
      !/^crictl --runtime-endpoint \S+ ps /.test(l) &&
      !/^getenforce/.test(l) &&
      !/^restorecon -n /.test(l) &&
      !/^firewall-cmd --permanent (--zone=\S+ )?--query-/.test(l),
  )

/** Every file under a node root with its hash and mode; the installer's logs and records (new each run) aside. */
export async function treeHashes(root: string, skip: readonly string[] = []): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (relative(root, p) === 'var/log/kube-airgap' || skip.includes(relative(root, p))) continue
      if (e.isDirectory()) await walk(p)
      else if (e.isFile())
        out[relative(root, p)] = `${createHash('sha256')
          .update(await readFile(p))
          .digest('hex')} ${((await stat(p)).mode & 0o777).toString(8)}`
    }
  }
  await walk(root)
  return out
}

/** A command's result, with what the stand-ins recorded while it ran. */
export interface RecordedRun {
  code: number | null
  stdout: string
  stderr: string
  record: string[]
}

/** Runs `file args` with `env`, and returns the lines the stand-ins appended to `record` meanwhile. */
export async function recordedRun(file: string, args: string[], env: NodeJS.ProcessEnv, record: string): Promise<RecordedRun> {
  await writeFile(record, '', { flag: 'a' })
  const before = (await readFile(record, 'utf8')).length
  const res = await new Promise<Omit<RecordedRun, 'record'>>((resolve) => {
    const child = spawn(file, args, { env: { ...process.env, KA_RECORD: record, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
  const text = (await readFile(record, 'utf8')).slice(before).trim()
  return { ...res, record: text ? text.split('\n') : [] }
}

/**
 * `./install` of an unpacked bundle on node roots under the test's folder, with the stand-ins
 * first on PATH and as --host-commands; each root's record beside it. Read when called: the
 * test sets its folder, bundle and stand-ins in beforeAll.
 */
export function nodeRuns(at: () => { dir: string; bundle: string; standins: string }) {
  return {
    install: (args: string[], root: string, env: NodeJS.ProcessEnv = {}): Promise<RecordedRun> => {
      const { dir, bundle, standins } = at()
      return recordedRun(
        join(bundle, 'install'),
        [...args, '--root', root, '--host-commands', standins],
        { PATH: `${standins}:${process.env.PATH}`, KA_ROOT: root, ...env },
        join(root, '..', `${relative(dir, root).replace(/\//g, '_')}.record`),
      )
    },
    newRoot: async (name: string): Promise<string> => {
      const root = join(at().dir, 'roots', name)
      await mkdir(root, { recursive: true })
      await freshNodeRoot(root)
      return root
    },
  }
}
