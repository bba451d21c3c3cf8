import type { Io } from '../../bundle/report.js'
import type { Flags } from '../context.js'
import { adminRefreshPhase, certsRenewPhase } from '../phases/certs.js'
import { phaseCommand } from './install.js'

/** `./install certs renew`: verify, then renew and load this master's certificates (a worker: check the kubelet's rotation). */
export const certsRenewCommand = (flags: Flags, io: Io): Promise<void> =>
  phaseCommand(
    'certs renew',
    flags,
    io,
    { phases: ['certs'], log: 'certs', installed: true },
    (node) => [certsRenewPhase(node!), adminRefreshPhase],
    'next: sudo ./install doctor   # every certificate with its date\n',
  )
