import { KaError } from '../bundle/errors.js'
import { parseVersion } from '../bundle/version.js'
import { UPGRADE_BACKUP_DIR, UPGRADE_STATE } from './node-paths.js'
import { type Action, type Context, writeAction } from './plan.js'
import type { NodeKind } from './cluster-view.js'

/** What an upgrade in progress keeps on the node (UPGRADE_STATE): a rerun resumes it, --rollback undoes it. */
export interface UpgradeState {
  from: string
  to: string
  kind: NodeKind
  started: string
  /** The backup of what the upgrade replaces: UPGRADE_BACKUP_DIR/<from>. */
  backup: string
  /** kubeadm's backups of the control-plane manifests (KUBEADM_BACKUPS) from before this upgrade: the one it makes is the new one. */
  kubeadmBackups: string[]
  /** `kubeadm upgrade node` ran (it leaves no mark of its own on a worker). */
  upgradedNode?: boolean
  /** On the first master: `kubeadm upgrade apply` finished, so the cluster's kube-proxy, CoreDNS and kubeadm-config are at `to`. */
  applied?: boolean
  /** The node was cordoned before the upgrade: it stays cordoned after. */
  cordoned?: boolean
  /** This upgrade drained the node (a cordoned node is drained all the same). */
  drained?: boolean
  finished?: string
}

export async function readUpgradeState(ctx: Context): Promise<UpgradeState | undefined> {
  const text = await ctx.host.readText(UPGRADE_STATE)
  if (!text) return undefined
  try {
    const s = JSON.parse(text) as UpgradeState
    if (parseVersion(s.from) && parseVersion(s.to) && typeof s.backup === 'string' && s.backup.startsWith(`${UPGRADE_BACKUP_DIR}/`)) return s
  } catch {}
  throw new KaError('ESTEP', `${UPGRADE_STATE} is not one this installer wrote: look at it, remove it if no upgrade is under way, and run again`)
}

/** One file as the backup keeps it: its hash and mode, or that it was not there. */
export interface BackedUp {
  path: string
  sha256?: string
  mode?: number
}

export const stateWrite = (s: UpgradeState): Action => {
  const text = `${JSON.stringify(s, null, 2)}\n`
  return writeAction(UPGRADE_STATE, text, 0o600)
}
