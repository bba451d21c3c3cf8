import { execFileSync, spawnSync } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TOOL_VERSION } from '../../bundle/version.js'
import { clusterConfig } from '../../installer/cluster-config.js'
import { bundleCli } from '../support/cli.js'
import { freshNodeRoot, writeStandins } from '../support/standins.js'
import { lockWorld, startWorld, type World } from '../support/world.js'

/**
 * What an operator meets in the first ten minutes on a node, through the real installer: not
 * root, a node that is not ready yet, a long run and its log, JSON for scripts, the pages
 * inside the bundle, doctor on a fresh node, and the build's version and usage errors.
 */
const NAME = 'kube-airgap-v1.29.3-linux-amd64'
let dir: string
let world: World
let bundle: string
let standins: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-first-'))
  // Real archives (Debian's containerd, runc, CNI plugins): a dry run plans every phase, and reads them.
  world = await startWorld(dir, { realistic: true })
  const lock = join(dir, 'bundle.lock.json')
  await lockWorld(world, lock, join(dir, 'cache'))
  const b = await bundleCli(['build', '--lock', lock, '--out', join(dir, 'out'), '--cache', join(dir, 'cache'), ...world.args])
  expect(b.code, b.stderr).toBe(0)
  // What to do next, after the path: what to copy and the node commands.
  expect(b.stderr).toMatch(
    /^next: {3}copy kube-airgap-v1\.29\.3-linux-amd64\.tar and kube-airgap-v1\.29\.3-linux-amd64\.tar\.sha256 to the stick; on each node:$/m,
  )
  expect(b.stderr).toMatch(/not signed \(bundle build --sign KEY to sign\); no OS packages/)
  execFileSync('tar', ['xf', `${NAME}.tar`], { cwd: join(dir, 'out') })
  bundle = join(dir, 'out', NAME)
  standins = await writeStandins(join(dir, 'standins'))
  // Readable by another user (the non-root tests run the installer as nobody).
  for (const d of [dir, join(dir, 'out')]) await chmod(d, 0o755)
}, 180_000)
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

const run = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...process.env, ...env } })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}
const install = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run([process.execPath, join(bundle, 'installer', 'install.mjs'), '--bundle', bundle, ...args], env)
const underRoot = async (root: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
  install([...args, '--root', root, '--host-commands', standins], {
    ...env,
    PATH: `${standins}:${process.env.PATH}`,
    KA_RECORD: join(root, '..', 'record'),
    KA_ROOT: root,
  })
const asNobody = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(
    ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, join(bundle, 'installer', 'install.mjs'), '--bundle', bundle, ...args],
    { HOME: '/nonexistent', ...env },
  )
const newRoot = async (label: string) => {
  const root = await mkdtemp(join(dir, `${label}-`))
  await freshNodeRoot(root)
  return root
}

describe('without root', () => {
  it('install, join-command and reset say one line, exit 2, before anything is read or written', async () => {
    for (const [args, line] of [
      [['--role', 'worker'], 'install: EUSAGE: run it as root: sudo ./install --role worker (or --dry-run to see what it would do)'],
      [['join-command'], 'install: EUSAGE: run it as root: sudo ./install join-command (or --dry-run to see what it would do)'],
      [['reset', '--yes'], 'install: EUSAGE: run it as root: sudo ./install reset --yes (or --dry-run to see what it would do)'],
    ] as const) {
      const r = asNobody([...args])
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toBe(`${line}\n`)
    }
  })

  it("verify works, and puts its record in the user's own state folder; doctor says what it could not read", async () => {
    const state = await mkdtemp(join(dir, 'state-'))
    await chmod(state, 0o777)
    const v = asNobody(['verify', '--json'], { XDG_STATE_HOME: state })
    expect(v.code, v.stderr).toBe(0)
    const out = JSON.parse(v.stdout)
    expect(out).toMatchObject({ ok: true, name: NAME, record: expect.stringMatching(new RegExp(`^${state}/kube-airgap/verify-.*\\.json$`)) })
    expect(JSON.parse(await readFile(out.record, 'utf8'))).toMatchObject({ result: 'verified', bundle: NAME })
    const d = asNobody(['doctor'])
    expect(d.stderr).toMatch(/^note {2}not run as root: what only root may read .* is reported as not there/m)
    expect(d.stderr).not.toMatch(/internal error|\n\s+at /)
  })

  it('verify with no home to write to puts its record in a new private folder under TMPDIR, and says where', async () => {
    const tmp = await mkdtemp(join(dir, 'tmp-'))
    await chmod(tmp, 0o777)
    const v = asNobody(['verify', '--json'], { HOME: '/nonexistent', TMPDIR: tmp })
    expect(v.code, v.stderr).toBe(0)
    const out = JSON.parse(v.stdout)
    expect(out.record).toMatch(new RegExp(`^${tmp}/kube-airgap-record-[^/]+/verify-.*\\.json$`))
    expect(v.stderr).toMatch(
      new RegExp(`^note {2}/nonexistent/\\.local/state/kube-airgap cannot be written \\(E[A-Z]+\\): the record goes to ${tmp}/kube-airgap-record-`, 'm'),
    )
    expect((await stat(dirname(out.record))).mode & 0o777).toBe(0o700)
  })
})

describe('a dry run always plans', () => {
  it('on a node that is not ready (no systemd, no default route): lists the failures, then plans every phase', async () => {
    const root = await newRoot('dry')
    await rm(join(root, 'run/systemd/system'), { recursive: true })
    const before = await readdir(join(root, 'etc'))
    const r = await underRoot(root, ['--role', 'master', '--dry-run'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/^FAIL {2}systemd: systemd is not running as init/m)
    expect(r.stderr).toMatch(/^WARN {2}cannot tell this node's address \(no default route\): the plan shows <advertise-address>/m)
    expect(r.stdout).toMatch(/^\[preflight\] checked +node checked: 1 failure a real run stops at/m)
    for (const phase of ['kernel', 'containerd', 'kubernetes', 'images', 'cluster', 'network', 'finish'])
      expect(r.stdout, phase).toMatch(new RegExp(`^\\[${phase}\\] would do `, 'm'))
    // Nothing claimed done that was not checked: a containerd that does not run is not "restarted already".
    expect(r.stdout).not.toMatch(/containerd runs the installed binary and config/)
    expect(r.stdout).toMatch(/^dry run: \d+ steps would change the node; nothing was changed$/m)
    expect(await readdir(join(root, 'etc'))).toEqual(before)
  })
})

describe('paths mean what they say', () => {
  // The shim once changed into the bundle folder: a relative --config from the operator's own
  // folder could not be read, and a link to install said the bundle was damaged.
  it('a relative --config from another folder works, install runs through a link, and a missing file names the example in the bundle folder', async () => {
    const home = await mkdtemp(join(dir, 'home-'))
    await writeFile(join(home, 'cluster.yaml'), 'podSubnet: 10.50.0.0/16\n')
    const root = await newRoot('paths')
    const shim = (cmd: string, args: string[]) =>
      spawnSync(cmd, [...args, '--root', root, '--host-commands', standins], {
        cwd: home,
        encoding: 'utf8',
        env: { ...process.env, PATH: `${standins}:${process.env.PATH}`, KA_RECORD: join(root, '..', 'record'), KA_ROOT: root },
      })
    const r = shim(join(bundle, 'install'), ['--role', 'master', '--config', 'cluster.yaml', '--dry-run', '--phases', 'cluster'])
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/10\.50\.0\.0\/16/)
    await symlink(join(bundle, 'install'), join(home, 'install'))
    const linked = shim(join(home, 'install'), ['--role', 'master', '--config', 'cluster.yaml', '--dry-run', '--phases', 'cluster'])
    expect(linked.status, linked.stderr).toBe(0)
    // The same plan (the kubeadm config and join state hold a fresh token each run).
    const plan = (out: string) => out.replace(/sha256:[0-9a-f]{64}/g, 'sha256:…')
    expect(plan(linked.stdout)).toBe(plan(r.stdout))
    const missing = shim(join(bundle, 'install'), ['--role', 'master', '--config', 'nope.yaml', '--dry-run'])
    expect(missing.status).toBe(2)
    expect(missing.stderr).toBe('install: EUSAGE: --config nope.yaml: cannot read it; give a cluster.yaml (see cluster.example.yaml in the bundle folder)\n')
  })
})

describe('the example cluster.yaml, used as it is', () => {
  it('on a machine it does not name: the dry run says FAIL naming the key to edit and plans on; the real run refuses, changing nothing', async () => {
    const root = await newRoot('example')
    const example = join(bundle, 'cluster.example.yaml')
    const dry = await underRoot(root, ['--role', 'master', '--config', example, '--dry-run', '--phases', 'cluster'])
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stderr).toMatch(
      /^FAIL {2}controlPlaneEndpoint 192\.168\.1\.11:6443 is k8s01's address \(nodes:\), not this node .*: edit controlPlaneEndpoint in cluster\.yaml.*; a real run stops here$/m,
    )
    expect(dry.stderr).toMatch(/^FAIL {2}nodes: in cluster\.yaml names k8s01, k8s02, none of them this node .*: edit nodes: /m)
    const before = await readdir(join(root, 'etc'))
    const real = await underRoot(root, ['--role', 'master', '--config', example, '--advertise-address', '192.0.2.10'])
    expect(real.code).toBe(2)
    expect(real.stderr).toMatch(/^install: EUSAGE: controlPlaneEndpoint 192\.168\.1\.11:6443 is k8s01's address \(nodes:\)/)
    expect(real.stderr.trim().split('\n')).toHaveLength(1)
    expect(await readdir(join(root, 'etc'))).toEqual(before)
  })
})

describe('reset asks first', () => {
  it('on a terminal, lists every step it will run (those with nothing to do marked), and a no changes nothing', async () => {
    const root = await newRoot('reset-ask')
    await mkdir(join(root, 'etc/cni/net.d'), { recursive: true })
    await writeFile(join(root, 'etc/cni/net.d/10-calico.conflist'), '{}\n')
    // A real terminal: script(1) runs the installer on a pty and passes it the answer.
    const cmd = [process.execPath, join(bundle, 'installer', 'install.mjs'), '--bundle', bundle, 'reset', '--root', root, '--host-commands', standins]
    const r = spawnSync('script', ['-qec', cmd.map((a) => `'${a}'`).join(' '), '/dev/null'], {
      input: 'n\n',
      encoding: 'utf8',
      env: { ...process.env, PATH: `${standins}:${process.env.PATH}`, KA_ROOT: root, NO_COLOR: '1' },
    })
    // What the terminal shows: carriage returns and readline's cursor controls taken out.
    const out = r.stdout.replace(/\r|\x1b\[[0-9;]*[A-Za-z]/g, '')
    expect(r.status, out).toBe(0)
    const listed = out
      .split('./install reset will run:\n')[1]!
      .split('Go ahead?')[0]!
      .trim()
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
    // Every step the run takes, as a dry run lists them; the one with work to do unmarked.
    const dry = await underRoot(root, ['reset', '--dry-run'])
    const steps = [...dry.stdout.matchAll(/^\[reset\] (?:already done|would do) +(.*)$/gm)].map((m) => m[1]!)
    expect(steps.length).toBeGreaterThan(5)
    expect(listed.map((l) => l.replace(/ {2}\(nothing to do now\)$/, ''))).toEqual(steps)
    expect(listed.filter((l) => !l.endsWith('(nothing to do now)'))).toEqual(['CNI state removed (/etc/cni/net.d, /var/lib/cni, /run/flannel)'])
    expect(out).toMatch(/^nothing was changed$/m)
    expect(await readFile(join(root, 'etc/cni/net.d/10-calico.conflist'), 'utf8')).toBe('{}\n')
  })
})

describe('signs of life, and a log', () => {
  it('prints when a step starts, writes every step and command with its output to a 0600 log, and names it', async () => {
    const root = await newRoot('log')
    const r = await underRoot(root, ['--role', 'worker', '--phases', 'kernel'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^\[kernel\] started +kernel modules loaded \(overlay, br_netfilter\)$/m)
    const path = /^log: (.*\/var\/log\/kube-airgap\/install-.*\.log)$/m.exec(r.stdout)?.[1]
    expect(path, r.stdout).toBeDefined()
    expect(path!.startsWith(root)).toBe(true)
    expect((await stat(path!)).mode & 0o777).toBe(0o600)
    const log = await readFile(path!, 'utf8')
    // Local time with its offset, to the second.
    expect(log).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d kube-airgap .* install: bundle kube-airgap-v1\.29\.3-linux-amd64 \(verified, \d+ files\)$/m,
    )
    expect(log).toMatch(/^\S+[+-]\d\d:\d\d run {4}modprobe overlay$/m)
    expect(log).toMatch(/^\S+[+-]\d\d:\d\d {3}exit 0$/m)
    expect(log).toMatch(/^\S+[+-]\d\d:\d\d write {2}\/etc\/sysctl\.d\/k8s\.conf sha256:[0-9a-f]{64} 0644$/m)
    expect(log).toMatch(/^\S+[+-]\d\d:\d\d \[kernel\] done swap off now$/m)
  })

  it('a failure ends with the path of the log, which tells what failed', async () => {
    const root = await newRoot('fail')
    const r = await underRoot(root, ['--role', 'worker', '--phases', 'images', '--containerd-address', join(root, 'no.sock')])
    expect(r.code).toBe(1)
    const path = /; the full log: (\S+\.log)$/m.exec(r.stderr)?.[1]
    expect(path, r.stderr).toBeDefined()
    expect(await readFile(path!, 'utf8')).toMatch(/failed: containerd does not answer/)
  })

  it('a dry run writes no log', async () => {
    const root = await newRoot('nolog')
    const r = await underRoot(root, ['--role', 'worker', '--phases', 'kernel', '--dry-run'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).not.toMatch(/^log: /m)
    expect(await stat(join(root, 'var/log')).catch(() => undefined)).toBeUndefined()
  })
})

describe('for scripts and for the operator without a README', () => {
  it('verify --json (before or after the command) prints JSON with ok', async () => {
    const root = await newRoot('json')
    for (const args of [
      ['verify', '--json'],
      ['--json', 'verify'],
    ]) {
      const r = await underRoot(root, args)
      expect(r.code, r.stderr).toBe(0)
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, name: NAME })
    }
  })

  it('the bundle carries a quickstart in both languages and the example cluster.yaml; ./install config prints one that ./install accepts', async () => {
    // The dry run first, with the same --config as the real run that follows it.
    for (const page of ['README.txt', 'README.zh-CN.txt']) {
      const text = await readFile(join(bundle, page), 'utf8')
      const dry = text.indexOf('sudo ./install --role master --config ~/cluster.yaml --dry-run')
      expect(dry, page).toBeGreaterThan(0)
      expect(text.indexOf('sudo ./install --role master --config ~/cluster.yaml\n'), page).toBeGreaterThan(dry)
    }
    expect(await readFile(join(bundle, 'README.zh-CN.txt'), 'utf8')).toMatch(/第一个 master/)
    expect(await readFile(join(bundle, 'cluster.example.yaml'), 'utf8')).toMatch(/^controlPlaneEndpoint: /m)
    expect(await readFile(join(bundle, 'SHA256SUMS'), 'utf8')).toMatch(/ {2}README\.txt$/m)
    const r = install(['config', '--advertise-address', '192.0.2.10'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^controlPlaneEndpoint: 192\.0\.2\.10:6443$/m)
    const hostname = /^ {2}(\S+): \{ advertiseAddress: 192\.0\.2\.10 \}$/m.exec(r.stdout)?.[1]
    expect(clusterConfig(r.stdout, 'generated', {}, { networks: [], hostname: hostname! }).config).toMatchObject({
      advertiseAddress: '192.0.2.10',
      podSubnet: expect.stringMatching(/\/16$/),
    })
  })

  it('doctor on a fresh node says what is not installed yet (TODO), not FAIL', async () => {
    const root = await newRoot('fresh')
    await writeFile(join(root, 'etc/resolv.conf'), 'nameserver 10.0.0.53\n')
    const r = await underRoot(root, ['doctor', '--json'])
    const findings = JSON.parse(r.stdout).findings as { level: string; check: string }[]
    const level = (check: string) => findings.find((f) => f.check === check)?.level
    expect([level('containerd config'), level('module overlay'), level('net.ipv4.ip_forward'), level('swap')]).toEqual(['todo', 'todo', 'todo', 'todo'])
    const text = await underRoot(root, ['doctor'])
    expect(text.stdout).toMatch(/^TODO {2}containerd config +not installed yet/m)
    expect(text.stdout).toMatch(/things? not installed yet \(TODO: \.\/install does them\)$/m)
    // Colour where it is wanted, the same words; NO_COLOR wins over everything (no-color.org).
    const coloured = await underRoot(root, ['doctor'], { FORCE_COLOR: '1' })
    expect(coloured.stdout).toMatch(/^\x1b\[36mTODO\x1b\[0m {2}containerd config +not installed yet/m)
    expect(coloured.stdout.replace(/\x1b\[\d+m/g, '')).toBe(text.stdout)
    expect((await underRoot(root, ['doctor'], { FORCE_COLOR: '1', NO_COLOR: '1' })).stdout).toBe(text.stdout)
  })

  it('both sides say their version; usage errors are one coded line with a suggestion', async () => {
    expect(install(['--version']).stdout).toBe(`kube-airgap ${TOOL_VERSION}\n`)
    expect(install(['version']).stdout).toBe(`kube-airgap ${TOOL_VERSION}\nbundle: Kubernetes 1.29.3, linux/amd64 (not verified here: ./install verify)\n`)
    expect((await bundleCli(['--version'])).stdout).toBe(`kube-airgap ${TOOL_VERSION}\n`)
    const typo = await bundleCli(['build', '--platfrom', 'linux/amd64'])
    expect(typo.code).toBe(2)
    expect(typo.stderr).toBe("bundle: EUSAGE: unknown option '--platfrom' (did you mean --platform?); see bundle --help\n")
    const red = await bundleCli(['build', '--platfrom', 'linux/amd64'], { env: { FORCE_COLOR: '1' } })
    expect(red.stderr).toBe("bundle: \x1b[31mEUSAGE\x1b[0m: unknown option '--platfrom' (did you mean --platform?); see bundle --help\n")
    const phase = install(['--role', 'worker', '--phases', 'kernal', '--dry-run'])
    expect(phase.code).toBe(2)
    expect(phase.stderr).toMatch(/^install: EUSAGE: --phases: unknown phase "kernal" \(did you mean "kernel"\?\)/)
  })
})
