import type { Io } from '../../bundle/report.js'
import type { Flags } from '../context.js'
import { removeNodePhase } from '../phases/remove-node.js'
import { phaseCommand } from './install.js'

/** `./install remove-node NAME`, on a master: the node taken out of the cluster; then reset on it. */
export const removeNodeCommand = (name: string, flags: Flags, io: Io): Promise<void> =>
  phaseCommand(
    `remove-node ${name}`,
    flags,
    io,
    { phases: ['remove-node'], log: 'remove-node', installed: true },
    (node) => [removeNodePhase(node!, name)],
    `next: on ${name}: sudo ./install reset --purge (a replacement joins with a fresh join file: sudo ./install join-command here first)\n`,
  )
