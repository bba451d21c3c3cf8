import { readFile, stat } from 'node:fs/promises'
import { basename } from 'node:path'
import yaml from 'js-yaml'
import { Sha256 } from '../bundle/digest.js'
import { KaError } from '../bundle/errors.js'
import { extractMembers, listMembers, type Member } from './archive.js'
import {
  BACKUP_SCRIPT,
  BACKUP_SETTINGS,
  BACKUP_UNIT_NAME,
  BIN_DIR,
  ETCD_MANIFEST,
  KUBEADM_CONFIG,
  KUBEADM_JOIN_CONFIG,
  PKI_DIR,
  STATE_DIR,
} from './node-paths.js'

/** What a master's etcd is, as kubeadm's static pod says: the member's name, its data folder, where clients and peers reach it. */
export interface EtcdMember {
  name: string
  dataDir: string
  /** The URL this node's own clients use (the loopback one kubeadm listens on, when there is one). */
  clientUrl: string
  peerUrl: string
}

/** Reads kubeadm's etcd static pod (`- --name=m01` and the like in its command). */
export function etcdMember(text: string, where = ETCD_MANIFEST): EtcdMember {
  let doc: { spec?: { containers?: { command?: unknown[] }[] } }
  try {
    doc = (yaml.load(text) ?? {}) as typeof doc
  } catch {
    doc = {}
  }
  const flags = new Map<string, string>()
  for (const a of doc.spec?.containers?.[0]?.command ?? []) {
    const m = /^--([a-z-]+)=(.*)$/.exec(String(a))
    if (m) flags.set(m[1]!, m[2]!)
  }
  const need = (flag: string, shape: RegExp): string => {
    const v = flags.get(flag)
    if (v === undefined || !shape.test(v))
      throw new KaError(
        'ESTEP',
        `${where} has no usable --${flag}: it is not the static pod kubeadm writes; restore it from kubeadm (or a backup) and run again`,
      )
    return v
  }
  const url = /^https?:\/\/[0-9A-Za-z.:[\]-]+$/
  const clients = need('listen-client-urls', /^\S+$/).split(',')
  const advertised = need('advertise-client-urls', /^\S+$/).split(',')
  const clientUrl = clients.find((u) => /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(u)) ?? advertised[0]!
  if (!url.test(clientUrl))
    throw new KaError('ESTEP', `${where}: the client URL ${JSON.stringify(clientUrl)} is not one etcd takes; restore the file and run again`)
  return {
    name: need('name', /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/),
    dataDir: need('data-dir', /^\/[A-Za-z0-9._/-]+$/),
    clientUrl,
    peerUrl: need('initial-advertise-peer-urls', url),
  }
}

/** `./install backup`'s settings for the script: this member's name and client URL (checked shell-safe by etcdMember). */
export const backupSettings = (m: EtcdMember): string =>
  `# Written by ./install backup (kube-airgap): this master's etcd, as ${ETCD_MANIFEST} says; ${BACKUP_SCRIPT} reads it.\nNAME=${m.name}\nENDPOINT=${m.clientUrl}\n`

/**
 * The backup itself, in one place for the command and the timer: a consistent snapshot from
 * this master's etcd (etcdctl snapshot save asks one member for a point-in-time copy), its
 * member list, the PKI, etcd's static pod and kubeadm's configuration, with SHA256SUMS inside
 * and the file's own sha256 beside it; only root reads any of it. Under a --root folder
 * (tests), every node path is found below the folder the script sits in.
 */
export const backupScript = (): string => `#!/bin/sh
# ${basename(BACKUP_SCRIPT)} DIR KEEP: one file in DIR with a consistent snapshot of this master's etcd,
# its members, the PKI, etcd's static pod and kubeadm's configuration (SHA256SUMS inside lists
# each with its sha256; the file's own sha256 is beside it), the newest KEEP of this master kept.
# Written by ./install backup (kube-airgap), run by it and by ${BACKUP_UNIT_NAME}.timer;
# ./install restore FILE brings etcd back from one.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 DIR KEEP" >&2; exit 2; }
dir=$1 keep=$2
self=$(readlink -f "$0")
root=\${self%${BACKUP_SCRIPT}}
. "$root${BACKUP_SETTINGS}"
umask 077
pki=$root${PKI_DIR}
mkdir -p "$root$dir"
work=$(mktemp -d "$root$dir/.partial-XXXXXX")
trap 'rm -rf "$work" "$work.tar.gz" "$work.log"' EXIT
etcdctl() {
  "$root${BIN_DIR}/etcdctl" --endpoints="$ENDPOINT" --cacert="$pki/etcd/ca.crt" --cert="$pki/etcd/healthcheck-client.crt" \\
    --key="$pki/etcd/healthcheck-client.key" --command-timeout=300s "$@"
}
etcdctl snapshot save "$work/etcd.db" >"$work.log" 2>&1 || { cat "$work.log" >&2; exit 1; }
etcdctl member list -w json >"$work/members.json"
cp -R "$pki" "$work/pki"
cp "$root${ETCD_MANIFEST}" "$work/etcd.yaml"
for f in ${basename(KUBEADM_CONFIG)} ${basename(KUBEADM_JOIN_CONFIG)}; do [ ! -f "$root${STATE_DIR}/$f" ] || cp "$root${STATE_DIR}/$f" "$work/$f"; done
(cd "$work" && find . -type f ! -name SHA256SUMS | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
name=etcd-$NAME-$(date -u +%Y%m%dT%H%M%SZ).tar.gz
[ ! -e "$root$dir/$name" ] || { echo "$dir/$name is there already: run again in a second" >&2; exit 1; }
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner -czf "$work.tar.gz" .
echo "$(sha256sum <"$work.tar.gz" | cut -d' ' -f1)  $name" >"$root$dir/$name.sha256"
mv "$work.tar.gz" "$root$dir/$name"
ls "$root$dir" | grep -E "^etcd-$NAME-[0-9]{8}T[0-9]{6}Z[.]tar[.]gz\\$" | LC_ALL=C sort -r | tail -n +$((keep + 1)) | while read -r old; do
  rm -f "$root$dir/$old" "$root$dir/$old.sha256"
done
echo "$dir/$name"
`

/** The timer's service: the script with the folder and count `./install backup --schedule daily` was given. */
export const backupService = (dir: string, keep: number): string =>
  `[Unit]\nDescription=kube-airgap: a backup of this master's etcd, PKI and kubeadm configuration (./install backup)\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart=${BACKUP_SCRIPT} ${dir} ${keep}\n`

export const backupTimer = (): string =>
  `[Unit]\nDescription=kube-airgap: a daily backup of this master's etcd (./install backup --schedule daily)\n\n[Timer]\nOnCalendar=daily\nRandomizedDelaySec=1h\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n`

/** The name a backup of member `name` has: etcd-<name>-<UTC time>.tar.gz. */
export const isBackupOf = (name: string, file: string): boolean => new RegExp(`^etcd-${name.replaceAll('.', '\\.')}-\\d{8}T\\d{6}Z\\.tar\\.gz$`).test(file)

/** A backup file, checked whole before anything is touched: its members, the etcd members it had, the small files read. */
export interface Backup {
  file: string
  sha256: Sha256
  /** The member the backup was taken on, and when (from its name). */
  takenOn: string
  members: { name: string; peerURLs: string[] }[]
  entries: Member[]
  /** SHA256SUMS, members.json, etcd.yaml and the CA files, as read. */
  small: Map<string, Buffer>
  /** Whether a FILE.sha256 was beside it (and matched). */
  sidecar: boolean
}

/** The CAs and the service-account key: where a backup and a node differ in these, they are of different clusters. */
export const CLUSTER_IDENTITY = ['pki/ca.crt', 'pki/etcd/ca.crt', 'pki/front-proxy-ca.crt', 'pki/sa.pub']

const damaged = (file: string, what: string) =>
  new KaError('EINTEGRITY', `${file}: ${what}: the backup is damaged; use another copy (or another backup)`, { path: file })

/**
 * Reads a backup `./install backup` wrote and proves it whole: the file against FILE.sha256
 * when that is beside it, every member against the SHA256SUMS inside, nothing missing or
 * extra, the member list readable. Only reads.
 */
export async function readBackup(file: string): Promise<Backup> {
  const st = await stat(file).catch(() => undefined)
  if (!st?.isFile()) throw new KaError('EUSAGE', `${file} is not a file: give a backup ./install backup wrote (etcd-<master>-<time>.tar.gz)`)
  const whole = (await Sha256.ofFile(file)).digest
  const side = await readFile(`${file}.sha256`, 'utf8').catch(() => undefined)
  if (side !== undefined) {
    const want = /^([0-9a-f]{64})\b/.exec(side.trim())?.[1]
    if (!want) throw damaged(`${file}.sha256`, 'holds no sha256')
    if (want !== whole.hex) throw damaged(file, `its sha256 is ${whole.hex}, ${basename(file)}.sha256 says ${want}`)
  }
  let entries: Member[]
  try {
    entries = await listMembers(file, whole)
  } catch (e) {
    throw e instanceof KaError && e.code === 'EINTEGRITY' ? e : damaged(file, `it does not unpack (${(e as Error).message})`)
  }
  const wanted = new Set(['SHA256SUMS', 'members.json', 'etcd.yaml', ...CLUSTER_IDENTITY])
  const small = new Map<string, Buffer>()
  await extractMembers(file, wanted, async (path, body) => {
    const chunks: Buffer[] = []
    for await (const c of body) chunks.push(c as Buffer)
    small.set(path, Buffer.concat(chunks))
  })
  const sums = new Map<string, string>()
  for (const line of (small.get('SHA256SUMS') ?? Buffer.alloc(0)).toString('utf8').split('\n').filter(Boolean)) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line)
    if (!m) throw damaged(file, `its SHA256SUMS has a line that is not "<sha256>  <file>"`)
    sums.set(m[2]!, m[1]!)
  }
  for (const need of ['etcd.db', 'members.json', 'etcd.yaml']) if (!sums.has(need)) throw damaged(file, `it lacks ${need}`)
  for (const e of entries) {
    if (e.path === 'SHA256SUMS') continue
    const want = sums.get(e.path)
    if (!want) throw damaged(file, `${e.path} is not in its SHA256SUMS`)
    if (want !== e.sha256.hex) throw damaged(file, `${e.path} does not match its SHA256SUMS`)
    sums.delete(e.path)
  }
  if (sums.size) throw damaged(file, `it lacks ${[...sums.keys()].join(', ')}`)
  let members: Backup['members']
  try {
    const list = JSON.parse(small.get('members.json')!.toString('utf8')) as { members?: { name?: string; peerURLs?: string[] }[] }
    members = (list.members ?? []).map((m) => ({ name: String(m.name ?? ''), peerURLs: (m.peerURLs ?? []).map(String) }))
  } catch {
    throw damaged(file, 'its members.json is not what etcdctl member list -w json prints')
  }
  if (!members.length || members.some((m) => !m.name || !m.peerURLs.length)) throw damaged(file, 'its members.json names no usable member')
  const takenOn = etcdMember(small.get('etcd.yaml')!.toString('utf8'), `${file}: etcd.yaml`).name
  return { file, sha256: whole, takenOn, members, entries, small, sidecar: side !== undefined }
}
