import { readFile } from 'node:fs/promises'
import { type Io, printJson as writeJson } from '../../bundle/report.js'
import { loadYaml } from '../../bundle/yaml.js'
import { KUBEADM_TABLE } from '../package-files.js'

/** `bundle versions`: the Kubernetes versions this kube-airgap builds bundles for (its kubeadm image table). */
export async function versionsCommand(opts: { json?: boolean }, io: Io): Promise<void> {
  const out = (s: string) => io.out(s)
  const printJson = (value: unknown) => writeJson(io, value)
  const versions = Object.keys(loadYaml(await readFile(KUBEADM_TABLE, 'utf8'), KUBEADM_TABLE) as Record<string, unknown>)
  if (opts.json) return printJson({ ok: true, versions })
  out(`${versions.join('\n')}\n`)
}
