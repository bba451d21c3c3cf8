import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ANSIBLE_INVENTORY_EXAMPLE } from '../../bundle/layout.js'
import { KaError } from '../../bundle/errors.js'
import type { Io } from '../../bundle/report.js'
import { printable } from '../../bundle/text.js'
import type { Flags } from '../context.js'

/**
 * `./install inventory`: the commented example inventory for the bundle's fleet playbook
 * (ansible/site.yml), with every variable it reads. Read for display only: the playbook
 * checks the bundle before any node sees it.
 */
export async function inventoryCommand(flags: Flags, io: Io): Promise<void> {
  const path = join(flags.bundle, ANSIBLE_INVENTORY_EXAMPLE)
  const text = await readFile(path, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `no ${ANSIBLE_INVENTORY_EXAMPLE} in ${flags.bundle}: this bundle has no fleet playbook; build it again with this version`)
  })
  io.out(printable(text))
}
