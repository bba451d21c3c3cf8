import { readFile } from 'node:fs/promises'
import { misfitError, misfits, parseCompatibility } from '../../bundle/compatibility.js'
import { C } from '../../bundle/components.js'
import { KaError } from '../../bundle/errors.js'
import type { KubeadmRow } from '../../bundle/lock.js'
import type { KubeadmAnswer } from './kubeadm.js'
import type { LockOptions } from './lock.js'
import type { Manifest } from './manifest.js'

/** The manifest's versions against manifests/compatibility.yaml: a misfit stops the lock in one line; what the table cannot judge is noted. */
export async function checkFit(manifest: Manifest, o: LockOptions): Promise<void> {
  const table = parseCompatibility(await readFile(o.compatibility, 'utf8'), o.compatibility)
  const unknown: string[] = []
  const m = misfits(table, new Map([['kubernetes', manifest.kubernetes], ...manifest.components]), unknown)
  if (m.length) throw misfitError('the manifest', m)
  for (const u of unknown) o.progress.note(`note     manifests/compatibility.yaml has no rule for ${u}: not checked`)
}

const rowText = (r: KubeadmRow): string => `coredns ${r.coredns}, etcd ${r.etcd}, pause ${r.pause}`

/** kubeadm's word against the table's: a difference is noted (kubeadm wins), or with --check-images fails the lock. */
export function compareWithTable(kubernetes: string, k: KubeadmAnswer, o: LockOptions): void {
  const same = k.table && rowText(k.table) === rowText(k.row)
  if (k.from === 'kubeadm' && !same)
    o.progress.note(
      `note     kubeadm v${kubernetes} lists ${rowText(k.row)}; ${k.table ? `manifests/kubeadm-images.yaml says ${rowText(k.table)}` : 'manifests/kubeadm-images.yaml has no row for it'}: the lock takes kubeadm's`,
    )
  if (!o.checkImages) return
  if (k.from !== 'kubeadm')
    throw new KaError('EUSAGE', `--check-images: cannot ask kubeadm v${kubernetes} here (${k.why}); run it on a linux amd64 or arm64 machine`)
  if (!same)
    throw new KaError(
      'ELOCK',
      `--check-images: kubeadm v${kubernetes} lists ${rowText(k.row)}, but manifests/kubeadm-images.yaml ${k.table ? `says ${rowText(k.table)}` : 'has no row for it'}: write '${kubernetes}': { coredns: ${k.row.coredns}, etcd: ${k.row.etcd}, pause: '${k.row.pause}' } there`,
    )
  o.progress.note(`checked  manifests/kubeadm-images.yaml agrees with kubeadm v${kubernetes}: ${rowText(k.row)}`)
}

/** What kubeadm said, against the table (noted, or refused with --check-images) and against the manifest's etcd clients. */
export function checkKubeadmAnswer(manifest: Manifest, k: KubeadmAnswer, o: LockOptions): void {
  compareWithTable(manifest.kubernetes, k, o)
  const etcd = manifest.components.get(C.etcd)
  const theirs = k.row.etcd.replace(/-\d+$/, '')
  if (etcd && etcd !== theirs)
    throw new KaError(
      'ELOCK',
      `the manifest: components.etcd is ${etcd}, but kubeadm v${manifest.kubernetes} runs etcd ${k.row.etcd}: give etcd: ${theirs} (the backup and restore clients must be the cluster's etcd)`,
    )
}
