import { CNI_BIN_DIR } from '../node-paths.js'
import { C } from '../../bundle/components.js'
import type { Phase } from '../plan.js'
import { membersStep } from '../steps.js'

export const cni: Phase = {
  name: 'cni',
  summary: `the CNI plugins into ${CNI_BIN_DIR}`,
  async plan(ctx) {
    return [await membersStep(ctx, `CNI plugins in ${CNI_BIN_DIR}`, C.cniPlugins, CNI_BIN_DIR)]
  },
}
