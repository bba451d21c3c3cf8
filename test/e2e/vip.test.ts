import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, openSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keepalivedArgv, keepalivedConfig, routerId, VRRP, vipCheck } from '../../installer/vip.js'

/**
 * The virtual IP with the real keepalived (Debian's package, as the bundle carries it for the
 * nodes) running the configuration the installer writes, on three masters: three network
 * namespaces joined by veth pairs to a bridge in a fourth, where the client sits. Each master
 * runs a listener on 6443 playing its API server (the check keepalived runs connects to it),
 * answering with its name. Everything is created by the test and removed after.
 */
const KEEPALIVED = '/usr/sbin/keepalived'
const ip = (...args: string[]) => spawnSync('ip', args, { encoding: 'utf8' })
const CAN_NETNS = process.getuid?.() === 0 && ip('netns', 'add', 'ka-vip-probe').status === 0 && ip('netns', 'del', 'ka-vip-probe').status === 0
const WHY_NOT = !existsSync(KEEPALIVED)
  ? "no /usr/sbin/keepalived here (.ci/run installs Debian's keepalived)"
  : !CAN_NETNS
    ? 'this machine cannot create network namespaces (ip netns add needs root and CAP_NET_ADMIN)'
    : undefined
if (WHY_NOT) console.log(`vip.test.ts: ${WHY_NOT}: the virtual IP tests are skipped`)

const VIP = '10.77.0.100'
const LAN = 'ka-vip-lan'
const MASTERS = [
  { name: 'm01', ns: 'ka-vip-m01', address: '10.77.0.11' },
  { name: 'm02', ns: 'ka-vip-m02', address: '10.77.0.12' },
  { name: 'm03', ns: 'ka-vip-m03', address: '10.77.0.13' },
]
const keepalived = new Map<string, ChildProcess>()
const apiServers = new Map<string, ChildProcess>()
let dir: string

const inNs = (ns: string, cmd: string[], opts: { stdio?: 'ignore' | 'pipe' } = {}) =>
  spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', opts.stdio ?? 'ignore', opts.stdio ?? 'ignore'] })

/** A listener on 0.0.0.0:6443 in the master's namespace, answering its name: the API server, as far as the VIP is concerned. */
function startApiServer(m: (typeof MASTERS)[number]): Promise<void> {
  const p = inNs(
    m.ns,
    [process.execPath, '-e', `require('node:http').createServer((q, s) => s.end('${m.name}')).listen(6443, '0.0.0.0', () => console.log('up'))`],
    {
      stdio: 'pipe',
    },
  )
  apiServers.set(m.name, p)
  return new Promise((resolve) => p.stdout?.once('data', () => resolve()))
}

/** keepalived on a master, its log (what it says of each state change and check) in the master's folder. */
function startKeepalived(m: (typeof MASTERS)[number]): void {
  const run = join(dir, m.name)
  const log = openSync(join(run, 'keepalived.log'), 'a')
  // Its own process group: killed as a crash kills it, the VRRP and checker children with it.
  keepalived.set(
    m.name,
    spawn('ip', ['netns', 'exec', m.ns, ...keepalivedArgv(join(run, 'keepalived.conf'), run)], { stdio: ['ignore', log, log], detached: true }),
  )
}

/** keepalived crashed on a master: every one of its processes killed at once, nothing said to the others. */
async function crash(name: string): Promise<void> {
  const p = keepalived.get(name)!
  const gone = new Promise((r) => p.once('exit', r))
  process.kill(-p.pid!, 'SIGKILL')
  await gone
  keepalived.delete(name)
}

/** Who answers at the virtual IP, from the client's namespace. */
function whoAnswers(): string {
  const r = spawnSync('ip', ['netns', 'exec', LAN, 'curl', '-s', '--max-time', '0.5', `http://${VIP}:6443/`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout : 'nobody'
}

async function secondsUntil(want: (who: string) => boolean, limit: number): Promise<{ seconds: number; who: string }> {
  const t0 = Date.now()
  let who = ''
  while (Date.now() - t0 < limit * 1000) {
    who = whoAnswers()
    if (want(who)) return { seconds: (Date.now() - t0) / 1000, who }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`not within ${limit} s: the virtual IP answered ${who}`)
}

function cleanup(): void {
  for (const p of keepalived.values()) if (p.exitCode === null) process.kill(-p.pid!, 'SIGKILL')
  for (const p of apiServers.values()) p.kill('SIGKILL')
  for (const ns of [LAN, ...MASTERS.map((m) => m.ns)]) ip('netns', 'del', ns)
}

beforeAll(async () => {
  if (WHY_NOT) return
  cleanup()
  // keepalived runs a check script only from a folder no one but root can write: not under /tmp.
  await mkdir('/run/kube-airgap-test', { recursive: true, mode: 0o755 })
  dir = await mkdtemp('/run/kube-airgap-test/vip-')
  await chmod(dir, 0o755)
  ip('netns', 'add', LAN)
  ip('-n', LAN, 'link', 'add', 'br0', 'type', 'bridge')
  ip('-n', LAN, 'addr', 'add', '10.77.0.1/24', 'dev', 'br0')
  ip('-n', LAN, 'link', 'set', 'br0', 'up')
  ip('-n', LAN, 'link', 'set', 'lo', 'up')
  for (const [i, m] of MASTERS.entries()) {
    ip('netns', 'add', m.ns)
    ip('link', 'add', `ka-vip-h${i}`, 'type', 'veth', 'peer', 'name', `ka-vip-n${i}`)
    ip('link', 'set', `ka-vip-h${i}`, 'netns', LAN)
    ip('link', 'set', `ka-vip-n${i}`, 'netns', m.ns)
    ip('-n', LAN, 'link', 'set', `ka-vip-h${i}`, 'master', 'br0')
    ip('-n', LAN, 'link', 'set', `ka-vip-h${i}`, 'up')
    ip('-n', m.ns, 'link', 'set', `ka-vip-n${i}`, 'name', 'eth0')
    ip('-n', m.ns, 'addr', 'add', `${m.address}/24`, 'dev', 'eth0')
    ip('-n', m.ns, 'link', 'set', 'eth0', 'up')
    ip('-n', m.ns, 'link', 'set', 'lo', 'up')
    const run = join(dir, m.name)
    await mkdir(run, { mode: 0o755 })
    const check = join(run, 'apiserver-check.sh')
    await writeFile(check, vipCheck(), { mode: 0o755 })
    await writeFile(
      join(run, 'keepalived.conf'),
      keepalivedConfig({ vip: VIP, iface: 'eth0', self: m.address, masters: MASTERS.map(({ name, address }) => ({ name, address })), index: i, check }),
    )
    await startApiServer(m)
  }
  for (const m of MASTERS) startKeepalived(m)
}, 60_000)

afterAll(async () => {
  if (WHY_NOT) return
  cleanup()
  if (process.env.KA_KEEP) return
  await rm(dir, { recursive: true, force: true })
})

describe.skipIf(!!WHY_NOT)('the virtual IP: the real keepalived with the configuration the installer writes, on three masters in network namespaces', () => {
  it('is a configuration keepalived accepts (keepalived --config-test)', () => {
    const r = spawnSync(KEEPALIVED, ['--config-test', '--use-file', join(dir, 'm01', 'keepalived.conf')], { encoding: 'utf8' })
    expect(r.status, r.stderr + r.stdout).toBe(0)
    expect(routerId(VIP)).toBeGreaterThanOrEqual(1)
  })

  it('answers from the first master; killed there, it answers from another within 5 s; back, the first takes it again', async () => {
    const first = await secondsUntil((who) => who === 'm01', 15)
    console.log(`the virtual IP answered from m01 ${first.seconds.toFixed(1)} s after the checks began`)
    await crash('m01')
    const moved = await secondsUntil((who) => who === 'm02' || who === 'm03', 5)
    console.log(
      `keepalived killed on m01: the virtual IP answered from ${moved.who} after ${moved.seconds.toFixed(1)} s (RFC 5798: three advertisement intervals of ${VRRP.advertSeconds} s and a skew)`,
    )
    expect(moved.seconds).toBeLessThanOrEqual(5)
    // A crashed keepalived leaves its address on m01's interface (the API server there still answers it
    // from m01's side): take it off, as a reboot would, then start it again.
    ip('-n', 'ka-vip-m01', 'addr', 'del', `${VIP}/32`, 'dev', 'eth0')
    startKeepalived(MASTERS[0]!)
    const back = await secondsUntil((who) => who === 'm01', 15)
    console.log(`keepalived back on m01: the virtual IP answered from it again after ${back.seconds.toFixed(1)} s`)
  }, 60_000)

  it('leaves a master whose API server stops, though its keepalived runs', async () => {
    await secondsUntil((who) => who === 'm01', 15)
    apiServers.get('m01')!.kill('SIGKILL')
    const limit = VRRP.fall * VRRP.checkSeconds + 3 * VRRP.advertSeconds + 2
    const moved = await secondsUntil((who) => who === 'm02' || who === 'm03', limit)
    console.log(`API server stopped on m01: the virtual IP answered from ${moved.who} after ${moved.seconds.toFixed(1)} s (within ${limit} s)`)
    expect(['m02', 'm03']).toContain(moved.who)
  }, 60_000)
})
