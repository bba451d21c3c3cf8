import { poll } from '../poll.js'
import { durationMs } from '../cluster-config.js'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { KUBEADM_REPOSITORY } from '../../bundle/closed-world.js'
import { imageName, parseImageRef } from '../../bundle/reference.js'
import { JOIN_CONTROL_PLANE, JOIN_WORKER } from '../../bundle/layout.js'
import type { Host } from '../host.js'
import type { NodeFacts } from '../facts.js'
import { caCertHash, formatJoinFile, initConfig, joinConfig, newCertificateKey, newToken, type JoinFile } from '../kubeadm.js'
import {
  CA_CERT,
  ETC_HOSTS,
  ETC_PASSWD,
  JOIN_STATE,
  KUBEADM_CONFIG,
  KUBEADM_JOIN_CONFIG,
  KUBECONFIG_ADMIN,
  KUBELET_KUBECONFIG,
  ROOT_KUBECONFIG,
} from '../node-paths.js'
import { fileStep, type Context, type Phase, type Step } from '../plan.js'
import { admin, finishInit, isControlPlane, KUBEADM, readyNodes } from '../cluster-state.js'
import { loadYaml } from '../../bundle/yaml.js'

/** kubeadm deletes uploaded control-plane certificates after two hours. */
const CERT_KEY_TTL_MS = 2 * 3_600_000

/** The first master: no join file. */
export const isFirstMaster = (ctx: Context) => ctx.options.role === 'master' && !ctx.cluster.join

export interface JoinState {
  endpoint: string
  token: string
  /** When the master made the token, by its clock: a joining node compares its own clock with it. */
  issued?: string
  expires: string
  certificateKey: string
  certificateKeyExpires: string
}

async function hostsStep(ctx: Context): Promise<Step | undefined> {
  const lines = ctx.cluster.config.extraHosts.map((h) => `${h.ip} ${h.names.join(' ')}`)
  return lines.length === 0 ? undefined : etcHostsStep(ctx, `node names in ${ETC_HOSTS} (${lines.length})`, lines)
}

/** Lines added to /etc/hosts (marked as ours), unless the file has them already. */
export async function etcHostsStep(ctx: Context, title: string, lines: string[]): Promise<Step> {
  const now = (await ctx.host.readText(ETC_HOSTS)) ?? ''
  const have = new Set(now.split('\n').map((l) => l.replace(/#.*$/, '').trim().replace(/\s+/g, ' ')))
  const missing = lines.filter((l) => !have.has(l))
  const next = `${now}${now && !now.endsWith('\n') ? '\n' : ''}${missing.map((l) => `${l}  # kube-airgap\n`).join('')}`
  return { ...(await fileStep(ctx, title, ETC_HOSTS, next)), done: missing.length === 0 }
}

export const cluster: Phase = {
  name: 'cluster',
  summary: 'kubeadm init on the first master (config from cluster.yaml and flags, images never pulled); kubeadm join with --join-file on the other nodes',
  async plan(ctx) {
    const { host, cluster: c, bundle } = ctx
    const steps: Step[] = []
    const hosts = await hostsStep(ctx)
    if (hosts) steps.push(hosts)
    if (ctx.options.role === 'worker' && !c.join) {
      ctx.say(`note  no --join-file: the node is prepared; join it with: sudo ./install --role worker --join-file join/worker.yaml`)
      return [...steps, { title: 'not joined yet (no --join-file)', done: true, checkOnly: true, actions: [] }]
    }
    if (c.join) {
      const done = await host.exists(KUBELET_KUBECONFIG)
      const config = joinConfig(bundle.lock.kubernetes, c.config, c.join, ctx.options.role === 'master' ? c.advertise : undefined)
      const file = await fileStep(ctx, `kubeadm join config (${KUBEADM_JOIN_CONFIG})`, KUBEADM_JOIN_CONFIG, config, 0o600)
      steps.push({ ...file, done: done || file.done })
      if (!done) steps.push(kubeadmAgrees(ctx, KUBEADM_JOIN_CONFIG))
      steps.push({
        title: `joined ${c.join.endpoint} as ${c.join.role === 'worker' ? 'a worker' : 'a control plane'} (kubeadm join)`,
        done,
        actions: [{ kind: 'run', argv: [KUBEADM, 'join', '--config', host.path(KUBEADM_JOIN_CONFIG)], stream: true }],
      })
      // kubeadm join writes kubelet.conf (kubelet-start) before control-plane-join adds the etcd
      // member and marks the node (cmd/kubeadm/app/cmd/join.go): a control plane is joined
      // once the cluster lists it as one.
      if (done && c.join.role !== 'worker' && !(await isControlPlane(ctx, c.config.nodeName)))
        steps.push({
          title: `joined as a control plane where kubeadm join stopped (kubeadm join phase control-plane-join: etcd member, control-plane label)`,
          done: false,
          actions: [{ kind: 'run', argv: [KUBEADM, 'join', 'phase', 'control-plane-join', 'all', '--config', host.path(KUBEADM_JOIN_CONFIG)], stream: true }],
        })
      return steps
    }
    // The first master. Once it has a cluster, the token and config are not made again; an
    // init that stopped part-way is finished, or (before the control plane answered) undone.
    if (await host.exists(KUBECONFIG_ADMIN)) {
      const finished = await finishInit(ctx)
      if (finished) return [...steps, finished]
      ctx.say(
        `note  kubeadm init stopped before the control plane answered (${KUBECONFIG_ADMIN} written, no API server, the kubelet never finalized): nothing was served yet, so it is undone with kubeadm reset -f and run again (kubeadm init refuses the files it left)`,
      )
      steps.push({
        title: 'the init that stopped before the control plane answered undone (kubeadm reset -f)',
        done: false,
        actions: [{ kind: 'run', argv: [KUBEADM, 'reset', '-f'] }],
      })
    }
    const token = newToken()
    const certificateKey = newCertificateKey()
    const now = ctx.facts.now()
    const endpoint = c.config.controlPlaneEndpoint ?? `${c.advertise}:6443`
    const state: JoinState = {
      endpoint,
      token,
      issued: new Date(now).toISOString(),
      expires: new Date(now + durationMs(c.config.tokenTTL)).toISOString(),
      certificateKey,
      certificateKeyExpires: new Date(now + CERT_KEY_TTL_MS).toISOString(),
    }
    steps.push(
      await fileStep(
        ctx,
        `kubeadm config (${KUBEADM_CONFIG}: Kubernetes ${bundle.lock.kubernetes}, pod subnet ${c.config.podSubnet}, service subnet ${c.config.serviceSubnet})`,
        KUBEADM_CONFIG,
        initConfig(bundle.lock.kubernetes, c.config, c.advertise, token, certificateKey),
        0o600,
      ),
    )
    steps.push(await fileStep(ctx, `join token kept for the join files (${JOIN_STATE})`, JOIN_STATE, `${JSON.stringify(state, null, 2)}\n`, 0o600))
    steps.push(kubeadmAgrees(ctx, KUBEADM_CONFIG))
    steps.push({
      title: `cluster initialized (kubeadm init, advertising ${c.advertise})`,
      done: false,
      actions: [{ kind: 'run', argv: [KUBEADM, 'init', '--config', host.path(KUBEADM_CONFIG), '--upload-certs'], stream: true }],
    })
    return steps
  },
}

/**
 * Before kubeadm init or join starts anything: the bundle's own kubeadm, asked offline for
 * this exact version, must want only images the bundle carries, and must accept the config.
 * With imagePullPolicy Never kubeadm skips its own image check, so a wrong image table would
 * otherwise surface as a four-minute control-plane time-out.
 */
export function kubeadmAgrees(ctx: Context, config?: string): Step {
  const version = `v${ctx.bundle.lock.kubernetes}`
  return {
    title: `kubeadm ${version} wants only the bundle's images${config ? `, and accepts ${config}` : ''}`,
    done: true,
    checkOnly: true,
    actions: [],
    check: async () => {
      const list = await ctx.host.run([KUBEADM, 'config', 'images', 'list', '--kubernetes-version', version, '--image-repository', KUBEADM_REPOSITORY], {
        changing: false,
      })
      if (list.code !== 0) throw new KaError('ESTEP', `kubeadm config images list failed: ${(list.stderr || list.stdout).trim().split('\n').pop()}`)
      const carried = new Set(ctx.bundle.images.map((i) => i.name))
      const lacking = list.stdout
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !carried.has(imageName(parseImageRef(l))))
      if (lacking.length) {
        throw new KaError(
          'ESTEP',
          `kubeadm ${version} wants ${lacking.join(', ')}, which the bundle does not carry (its image table is wrong for ${version}); nothing was started: correct manifests/kubeadm-images.yaml from \`kubeadm config images list --kubernetes-version ${version}\` and build the bundle again`,
          { lacking },
        )
      }
      if (!config) return
      const valid = await ctx.host.run([KUBEADM, 'config', 'validate', '--config', ctx.host.path(config)], { changing: false })
      if (valid.code !== 0)
        throw new KaError('ESTEP', `kubeadm config validate refuses ${config}: ${(valid.stderr || valid.stdout).trim().split('\n').slice(-2).join(' / ')}`)
    },
  }
}

async function sudoUser(host: Host, facts: NodeFacts): Promise<{ name: string; uid: number; gid: number; home: string } | undefined> {
  const name = facts.sudoUser
  if (!name) return undefined
  const line = ((await host.readText(ETC_PASSWD)) ?? '').split('\n').find((l) => l.startsWith(`${name}:`))
  const f = line?.split(':')
  return f?.[5] ? { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] } : undefined
}

/** The join files for the next nodes, into the bundle folder (mode 0600). */
export async function joinFileSteps(ctx: Context, state: JoinState): Promise<Step[]> {
  const pem = await ctx.host.readText(CA_CERT)
  if (!pem) throw new KaError('ESTEP', `${CA_CERT} is missing: kubeadm init did not finish; see journalctl -u kubelet`)
  // The Ready nodes the cluster has now: a node joining under one of these names is refused
  // before kubeadm join (the master's own name, at least, when the API does not answer). Only
  // Ready ones, as kubeadm join's own check (a node that was reset rejoins under its name).
  const names = await readyNodes(ctx)
  const nodes = [...new Set([ctx.cluster.config.nodeName, ...names])].sort()
  const base = {
    endpoint: state.endpoint,
    token: state.token,
    ...(state.issued ? { issued: state.issued } : {}),
    expires: state.expires,
    caCertHash: caCertHash(pem),
    nodes,
  }
  const files: [string, JoinFile][] = [
    [JOIN_WORKER, { role: 'worker', ...base }],
    [JOIN_CONTROL_PLANE, { role: 'control-plane', ...base, certificateKey: state.certificateKey, certificateKeyExpires: state.certificateKeyExpires }],
  ]
  // The bundle folder is not the node's filesystem: it travels on to the next node.
  const usb = ctx.usb
  const out: Step[] = []
  for (const [rel, j] of files) {
    const path = `/${rel}`
    // The nodes list is taken again only when the file is written for another reason (the
    // first time, a new token): nodes that joined since change nothing on a rerun, and kubeadm
    // join itself refuses a name the cluster has.
    const before = await usb.readText(path)
    let listed: unknown
    try {
      listed = before ? (loadYaml(before, rel) as { nodes?: unknown } | null)?.nodes : undefined
    } catch {
      listed = undefined // not a join file any more: written anew
    }
    const kept = Array.isArray(listed) && listed.every((n) => typeof n === 'string') ? formatJoinFile({ ...j, nodes: listed }) : undefined
    const text = kept === before && kept !== undefined ? kept : formatJoinFile(j)
    const now = await usb.fileState(path)
    const sha256 = Sha256.of(text)
    out.push({
      title: `${rel} for the next ${j.role === 'worker' ? 'workers' : 'masters'} (expires ${j.expires})`,
      done: !!now && now.sha256.equals(sha256) && now.mode === 0o600,
      on: usb,
      actions: [{ kind: 'write', path, mode: 0o600, sha256, size: text.length, data: () => Buffer.from(text) }],
    })
  }
  return out
}

export const finish: Phase = {
  name: 'finish',
  summary:
    'on the first master: kubeconfig for root and the sudo user, waits for the node to be Ready and kube-system to run, writes join/worker.yaml and join/control-plane.yaml; prints the next commands',
  async plan(ctx) {
    const { host, options } = ctx
    if (!isFirstMaster(ctx))
      return [{ title: ctx.cluster.join ? `node joined ${ctx.cluster.join.endpoint}` : 'node prepared', done: true, checkOnly: true, actions: [] }]
    const admin = await host.read(KUBECONFIG_ADMIN)
    if (!admin) {
      if (options.dryRun) return [{ title: 'kubeconfig, wait for Ready, join files (after kubeadm init)', done: false, actions: [] }]
      throw new KaError('ESTEP', `${KUBECONFIG_ADMIN} is missing: kubeadm init did not finish; look at \`crictl ps -a\` and \`crictl logs <id>\``)
    }
    const steps: Step[] = await adminKubeconfigSteps(ctx, admin)
    steps.push({
      title: `node ${ctx.cluster.config.nodeName} Ready and kube-system running`,
      done: true,
      checkOnly: true,
      actions: [],
      check: () => waitReady(ctx),
    })
    const state = JSON.parse((await host.readText(JOIN_STATE)) ?? '{}') as JoinState
    steps.push(...(await joinFileSteps(ctx, state)))
    return steps
  },
}

/**
 * The admin kubeconfig for root and for the user who ran sudo (theirs, 0600), as admin.conf
 * is now (`admin`, or read; in a dry run of a renewal, as it is before kubeadm rewrites it).
 */
export async function adminKubeconfigSteps(ctx: Context, admin?: Buffer): Promise<Step[]> {
  const now = admin ?? (await ctx.host.read(KUBECONFIG_ADMIN))
  if (!now) return []
  const steps: Step[] = [await fileStep(ctx, `kubeconfig for root (${ROOT_KUBECONFIG})`, ROOT_KUBECONFIG, now, 0o600, { uid: 0, gid: 0 })]
  const user = await sudoUser(ctx.host, ctx.facts)
  if (user)
    steps.push(
      await fileStep(ctx, `kubeconfig for ${user.name} (${user.home}/.kube/config)`, `${user.home}/.kube/config`, now, 0o600, {
        uid: user.uid,
        gid: user.gid,
      }),
    )
  return steps
}

/** Polls the API until the node is Ready and every kube-system pod runs, or the time is up. */
async function waitReady(ctx: Context): Promise<void> {
  await poll(
    ctx,
    2000,
    async () => {
      const node = await ctx.host.run(
        admin(ctx, 'get', 'nodes', ctx.cluster.config.nodeName, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'),
        {
          changing: false,
        },
      )
      const pods = await ctx.host.run(admin(ctx, 'get', 'pods', '-n', 'kube-system', '--no-headers'), { changing: false })
      const notRunning = pods.stdout.split('\n').filter((l) => l.trim() && !/\s(Running|Completed)\s/.test(l))
      if (node.stdout.trim() === 'True' && pods.code === 0 && pods.stdout.trim() && notRunning.length === 0) return undefined
      return node.stdout.trim() !== 'True'
        ? `node ${ctx.cluster.config.nodeName} is not Ready`
        : `kube-system pods not running: ${notRunning.map((l) => l.split(/\s+/)[0]).join(', ') || 'none listed yet'}`
    },
    (last, s) =>
      `${last} after ${s} s; look at the containers: \`crictl ps -a\`, then \`crictl logs <container id>\` of the failing one (kube-apiserver, etcd, calico-node), and \`journalctl -u kubelet\`; run ./install again once fixed`,
  )
}

/** A fresh token (kubeadm token create) and certificate key (certificates uploaded again), kept for the join files. */
export async function newJoinToken(ctx: Context): Promise<JoinState> {
  const old = JSON.parse((await ctx.host.readText(JOIN_STATE)) ?? 'null') as JoinState | null
  if (!old || !(await ctx.host.exists(KUBECONFIG_ADMIN)))
    throw new KaError('EUSAGE', `join-command runs on the first master, after ./install --role master (no ${JOIN_STATE} here)`)
  const ttl = ctx.cluster.config.tokenTTL
  const made = await ctx.host.run([KUBEADM, 'token', 'create', '--ttl', ttl])
  const token = made.stdout.trim().split('\n').pop() ?? ''
  if (made.code !== 0 || !/^[a-z0-9]{6}\.[a-z0-9]{16}$/.test(token))
    throw new KaError('ESTEP', `kubeadm token create failed: ${(made.stderr || made.stdout).trim()}`)
  const certificateKey = newCertificateKey()
  const up = await ctx.host.run([KUBEADM, 'init', 'phase', 'upload-certs', '--upload-certs', '--certificate-key', certificateKey])
  if (up.code !== 0) throw new KaError('ESTEP', `kubeadm init phase upload-certs failed: ${(up.stderr || up.stdout).trim()}`)
  const now = ctx.facts.now()
  const state: JoinState = {
    endpoint: old.endpoint,
    token,
    issued: new Date(now).toISOString(),
    expires: new Date(now + durationMs(ttl)).toISOString(),
    certificateKey,
    certificateKeyExpires: new Date(now + CERT_KEY_TTL_MS).toISOString(),
  }
  const text = `${JSON.stringify(state, null, 2)}\n`
  await ctx.host.write(JOIN_STATE, text, 0o600, Sha256.of(text))
  return state
}
