import type { Io } from '../../bundle/report.js'
import type { Flags } from '../context.js'
import { mastersFlag } from '../endpoint-config.js'
import { readBackup } from '../etcd.js'
import { backupOptions, backupPhase, newestBackup } from '../phases/backup.js'
import { restorePhase } from '../phases/restore.js'
import { phaseCommand } from './install.js'

export interface BackupFlags extends Flags {
  dir?: string
  keep?: string
  schedule?: string
}

/** `./install backup`: verify, then one backup of this master now (and the timer, as --schedule says). */
export async function backupCommand(flags: BackupFlags, io: Io): Promise<void> {
  const o = backupOptions(flags)
  await phaseCommand(
    'backup',
    flags,
    io,
    { phases: ['snapshot'], log: 'backup' },
    () => [backupPhase(o)],
    async (ctx) => {
      const newest = await newestBackup(ctx, o.dir)
      return `${newest ?? ''}next: copy it off this machine (with its .sha256); ./install restore FILE brings etcd back from it\n`
    },
  )
}

/** `./install restore FILE`: the backup proved whole first, then verify, then etcd brought back from it on this master. */
export async function restoreCommand(file: string, flags: Flags, io: Io): Promise<void> {
  const masters = flags.masters !== undefined ? mastersFlag(flags.masters) : undefined
  const backup = await readBackup(file)
  if (!backup.sidecar && !flags.json) io.err(`note: no ${file}.sha256 beside it: the backup is checked against the SHA256SUMS inside it only\n`)
  await phaseCommand(
    `restore ${file}`,
    flags,
    io,
    { phases: ['restore'], log: 'restore' },
    () => [restorePhase(backup, masters)],
    `next: sudo ./install doctor; etcd's old data is kept beside its data folder (remove it once the cluster is as it should be)\n`,
  )
}
