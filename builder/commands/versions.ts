import { readFile } from 'node:fs/promises'
import { older, parseCompatibility } from '../../bundle/compatibility.js'
import { type Io, printJson as writeJson } from '../../bundle/report.js'
import { loadYaml } from '../../bundle/yaml.js'
import { COMPATIBILITY, KUBEADM_TABLE } from '../package-files.js'

/**
 * `bundle versions`: the Kubernetes versions whose kubeadm images the table knows (any other is
 * asked of its own kubeadm at lock time), and which versions fit together, with the sources.
 */
export async function versionsCommand(opts: { json?: boolean }, io: Io): Promise<void> {
  const versions = Object.keys(loadYaml(await readFile(KUBEADM_TABLE, 'utf8'), KUBEADM_TABLE) as Record<string, unknown>)
  const fit = parseCompatibility(await readFile(COMPATIBILITY, 'utf8'), COMPATIBILITY)
  if (opts.json) return writeJson(io, { ok: true, versions, compatibility: fit })
  const row = (cells: string[], widths: number[]) => `${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd()
  const lines = [
    'Kubernetes versions whose kubeadm images manifests/kubeadm-images.yaml knows (bundle lock asks the pinned kubeadm of any other):',
    `  ${versions.join(', ')}`,
    '',
    'What fits together (manifests/compatibility.yaml; bundle lock refuses a manifest that does not):',
    `  ${row(['Kubernetes', 'containerd', 'Calico', 'crictl'], [10, 34, 16])}`,
    ...Object.entries(fit.containerd).map(([k, cs]) => {
      const calico = Object.entries(fit.calico)
        .filter(([, [a, b]]) => !older(k, a) && !older(b, k))
        .map(([c]) => c)
      return `  ${row([k, cs.map((c) => `${c}+`).join(', '), calico.join(', ') || '-', `${k}.x`], [10, 34, 16])}`
    }),
    '',
    `  ${row(['containerd', 'runc at least', 'CNI plugins at least'], [10, 13])}`,
    ...Object.entries(fit.runc).map(([c, r]) => `  ${row([c, r, fit.cniPlugins[c] ?? '-'], [10, 13])}`),
    '',
    'Sources:',
    ...Object.entries(fit.sources).map(([k, s]) => `  ${k}: ${s}`),
  ]
  io.out(`${lines.join('\n')}\n`)
}
