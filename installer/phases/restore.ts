import { KaError } from '../../bundle/errors.js'
import type { Backend } from '../apiserver-proxy.js'
import { type Backup, CLUSTER_IDENTITY, type EtcdMember } from '../etcd.js'
import { BIN_DIR, KUBERNETES_DIR, PKI_DIR, RESTART_DIR, RESTORE_STAGING, STATIC_PODS } from '../node-paths.js'
import type { Context, Phase, Step } from '../plan.js'
import { poll } from '../poll.js'
import { etcdToolsStep, localEtcd } from './backup.js'
import { startPodStep, stopPodStep } from './certs.js'

/** The control plane in the order it stops for a restore (the API server first: nothing writes to etcd meanwhile); it starts etcd first, then the rest in this order. */
const STOP_ORDER = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'etcd']

/**
 * `./install restore FILE` on a master, etcd's documented way (etcd.io, Disaster recovery;
 * kubernetes.io, Operating etcd clusters: restoring): the API server and etcd stopped, the old
 * data kept aside, the snapshot restored as this member of a new cluster of every member the
 * backup had (the same file and the same list on every master), etcd started and waited for,
 * then the rest of the control plane and the kubelet. The backup was proved whole before.
 */
export function restorePhase(backup: Backup, masters: Backend[] | undefined): Phase {
  return {
    name: 'restore',
    summary:
      'etcd brought back from a backup: the control plane stopped, the data kept aside, the snapshot restored as a new cluster of the same members, all started again',
    async plan(ctx) {
      const { member: me, manifest } = await localEtcd(ctx, 'restore')
      const cluster = initialCluster(backup, me, masters)
      const missing = await pkiMissing(ctx, backup)
      const pods = new Map<string, { manifest: Buffer; running: boolean }>()
      for (const pod of STOP_ORDER) {
        const now = await ctx.host.read(`${STATIC_PODS}/${pod}.yaml`)
        const aside = now ? undefined : await ctx.host.read(`${RESTART_DIR}/${pod}.yaml`)
        if (now || aside) pods.set(pod, { manifest: (now ?? aside)!, running: !!now })
      }
      pods.set('etcd', { manifest, running: pods.get('etcd')?.running ?? false })
      const stamp = new Date(ctx.facts.now())
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d+Z$/, 'Z')
      const staged = `${RESTORE_STAGING}/etcd.db`
      const aside = `${me.dataDir}.before-restore-${stamp}`
      const steps: Step[] = [
        await etcdToolsStep(ctx),
        {
          title: `${missing.length} PKI files this master lacks, from the backup`,
          done: missing.length === 0,
          actions: [{ kind: 'extract', archive: backup.file, files: missing }],
        },
        {
          title: `the snapshot (taken on ${backup.takenOn}) staged in ${RESTORE_STAGING}, checked against the backup's sums as written`,
          done: false,
          actions: [
            { kind: 'extract', archive: backup.file, files: [{ member: 'etcd.db', path: staged, mode: 0o600, sha256: entry(backup, 'etcd.db').sha256 }] },
          ],
        },
        ...STOP_ORDER.filter((p) => pods.get(p)?.running).map((p) => stopPodStep(ctx, p, pods.get(p)!.manifest)),
        {
          title: `etcd's old data (${me.dataDir}) kept as ${aside}`,
          done: !(await ctx.host.exists(me.dataDir)),
          actions: [{ kind: 'rename', path: me.dataDir, to: aside }],
        },
        {
          title: `etcd's data restored from the snapshot: member ${me.name} of a new cluster of ${cluster.map((m) => m.name).join(', ')}`,
          done: false,
          actions: [
            {
              kind: 'run',
              argv: [
                `${BIN_DIR}/etcdutl`,
                'snapshot',
                'restore',
                ctx.host.path(staged),
                '--name',
                me.name,
                '--initial-cluster',
                cluster.map((m) => `${m.name}=${m.peerUrl}`).join(','),
                '--initial-cluster-token',
                `kube-airgap-restore-${backup.sha256.hex.slice(0, 12)}`,
                '--initial-advertise-peer-urls',
                me.peerUrl,
                '--data-dir',
                ctx.host.path(me.dataDir),
              ],
            },
          ],
        },
        startPodStep(ctx, 'etcd', manifest, 'on the restored data'),
        {
          title: `etcd answers at ${me.clientUrl}${cluster.length > 1 ? ' (once most of the masters have restored too)' : ''}`,
          done: true,
          checkOnly: true,
          actions: [],
          check: () => etcdHealthy(ctx, me, cluster.length),
        },
        ...STOP_ORDER.filter((p) => p !== 'etcd' && pods.has(p)).map((p) => startPodStep(ctx, p, pods.get(p)!.manifest, 'on the restored state')),
        {
          title: 'the kubelet restarted (nothing it cached of the old state stays)',
          done: false,
          actions: [{ kind: 'run', argv: ['systemctl', 'restart', 'kubelet'] }],
        },
        { title: `${RESTORE_STAGING} removed`, done: false, actions: [{ kind: 'remove', path: RESTORE_STAGING }] },
      ]
      return steps
    },
  }
}

const entry = (backup: Backup, path: string) => backup.entries.find((e) => e.path === path)!

/**
 * Every member of the new cluster with its peer URL: the backup's members, each where
 * --masters puts it now (the port it had), this master where its own etcd says. A backup of
 * several members needs every one named: a restore that leaves one out splits the cluster.
 */
export function initialCluster(backup: Backup, me: EtcdMember, masters: Backend[] | undefined): { name: string; peerUrl: string }[] {
  const recorded = [...backup.members].sort((x, y) => x.name.localeCompare(y.name))
  const names = recorded.map((m) => m.name).join(', ')
  if (!recorded.some((m) => m.name === me.name))
    throw new KaError(
      'EUSAGE',
      `this master's etcd member is ${me.name}, which the backup (of ${names}) does not have; restore it on the masters it was taken from`,
    )
  if (recorded.length === 1) {
    if (masters && masters.length > 1)
      throw new KaError(
        'EUSAGE',
        `the backup is of a one-member etcd (${names}): restore it on ${names} alone, without --masters (the others join again after)`,
      )
    return [{ name: me.name, peerUrl: me.peerUrl }]
  }
  const every = recorded.map((m) => `${m.name}=<its address>`).join(',')
  if (!masters)
    throw new KaError(
      'EUSAGE',
      `the backup is of a ${recorded.length}-member etcd (${names}): name every master with --masters ${every}, and run the same restore with the same file on each of them`,
    )
  const missing = recorded.filter((r) => !masters.some((m) => m.name === r.name)).map((r) => r.name)
  const extra = masters.filter((m) => !recorded.some((r) => r.name === m.name)).map((m) => m.name)
  if (missing.length || extra.length)
    throw new KaError(
      'EUSAGE',
      `--masters must name every member of the backup's etcd (${names})${missing.length ? `; it leaves out ${missing.join(', ')}` : ''}${extra.length ? `; ${extra.join(', ')} ${extra.length > 1 ? 'are' : 'is'} not in it` : ''}`,
    )
  return recorded.map((r) => {
    const address = masters.find((m) => m.name === r.name)!.address
    if (r.name === me.name) {
      const own = new URL(me.peerUrl).hostname
      if (own !== address)
        throw new KaError('EUSAGE', `--masters gives ${me.name}=${address}, but this master's etcd is at ${me.peerUrl}; give its own address`)
      return { name: r.name, peerUrl: me.peerUrl }
    }
    const was = new URL(r.peerURLs[0]!)
    return { name: r.name, peerUrl: `${was.protocol}//${address}:${was.port || '2380'}` }
  })
}

/**
 * The PKI files of the backup this master lacks (a machine rebuilt with kubeadm's certificates
 * gone); the cluster's identity (its CAs, the service-account key) must be the backup's, or the
 * backup is of another cluster and nothing is done.
 */
async function pkiMissing(ctx: Context, backup: Backup) {
  const missing = []
  for (const e of backup.entries.filter((x) => x.path.startsWith('pki/'))) {
    const path = `${KUBERNETES_DIR}/${e.path}`
    const now = await ctx.host.fileState(path)
    if (!now) missing.push({ member: e.path, path, mode: e.path.endsWith('.key') ? 0o600 : 0o644, sha256: e.sha256 })
    else if (CLUSTER_IDENTITY.includes(e.path) && !now.sha256.equals(e.sha256))
      throw new KaError(
        'EUSAGE',
        `${path} differs from the backup's: the backup is of another cluster (or this one's CA was replaced since it was taken); restore a backup of this cluster`,
      )
  }
  return missing
}

async function etcdHealthy(ctx: Context, me: EtcdMember, members: number): Promise<void> {
  const tls = ['ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key'].map((f) => ctx.host.path(`${PKI_DIR}/etcd/${f}`))
  const argv = [
    `${BIN_DIR}/etcdctl`,
    `--endpoints=${me.clientUrl}`,
    `--cacert=${tls[0]}`,
    `--cert=${tls[1]}`,
    `--key=${tls[2]}`,
    '--command-timeout=5s',
    'endpoint',
    'health',
  ]
  await poll(
    ctx,
    2000,
    async () => {
      const r = await ctx.host.run(argv, { changing: false })
      return r.code === 0 ? undefined : `etcd not healthy yet (${(r.stderr || r.stdout).trim().split('\n').pop()})`
    },
    (last, s) =>
      `${last} after ${s} s${members > 1 ? `: run the same ./install restore on the other masters (${members - 1} more), then this again` : ': look at crictl logs of the etcd container'}; the old data is kept beside ${me.dataDir}`,
  )
}
