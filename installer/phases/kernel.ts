import { activeSwaps, loadedModules } from '../node-state.js'
import { FSTAB, FSTAB_BACKUP, MODULES_LOAD, procSys, SYSCTL_CONF } from '../node-paths.js'
import { fileStep, type Phase, type Step } from '../plan.js'
import { editStep } from '../steps.js'
import { securitySteps } from '../security.js'
import { modulesLoad, SYSCTLS, sysctlConf } from '../templates.js'

const MODULES = ['overlay', 'br_netfilter']

/** fstab with every active swap line commented out (and said why). */
export function fstabWithoutSwap(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      const fields = line.trim().split(/\s+/)
      return !line.trim().startsWith('#') && fields[2] === 'swap' ? `# swap disabled by kube-airgap (kubelet refuses to run with swap on): ${line}` : line
    })
    .join('\n')
}

export const kernel: Phase = {
  name: 'kernel',
  summary:
    "loads overlay and br_netfilter now and at boot, sets the sysctls Kubernetes needs, turns swap off now and after reboot; on SELinux and firewalld nodes, SELinux permissive and the role's ports opened (cluster.yaml selinux/firewalld: keep leaves them)",
  async plan(ctx) {
    const { host } = ctx
    const steps: Step[] = [await fileStep(ctx, `kernel modules at boot (${MODULES_LOAD})`, MODULES_LOAD, modulesLoad())]

    const loaded = await loadedModules(host)
    const missing = MODULES.filter((m) => !loaded.has(m))
    steps.push({
      title: `kernel modules loaded (${MODULES.join(', ')})`,
      done: missing.length === 0,
      actions: missing.map((m) => ({ kind: 'run', argv: ['modprobe', m] })),
    })

    steps.push(await fileStep(ctx, `sysctls at boot (${SYSCTL_CONF})`, SYSCTL_CONF, sysctlConf()))
    const live = await Promise.all(SYSCTLS.map(async ([k, v]) => ((await host.readText(procSys(k))) ?? '').trim() === v))
    steps.push({
      title: `sysctls applied (${SYSCTLS.map(([k]) => k).join(', ')})`,
      done: live.every(Boolean),
      actions: [{ kind: 'run', argv: ['sysctl', '--system'] }],
    })

    const swaps = await activeSwaps(host)
    steps.push({ title: 'swap off now', done: swaps.length === 0, actions: [{ kind: 'run', argv: ['swapoff', '-a'] }] })

    steps.push(await editStep(ctx, 'swap kept off after reboot', FSTAB, FSTAB_BACKUP, fstabWithoutSwap))
    steps.push(...(await securitySteps(ctx)))
    return steps
  },
}
