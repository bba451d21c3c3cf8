import { KaError } from '../bundle/errors.js'
import { parseCidr } from './cidr.js'

/** Blocks no cluster network or node address may use. */
export const RESERVED = [
  ['0.0.0.0/8', 'the unspecified block'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['224.0.0.0/3', 'multicast and reserved'],
].map(([cidr, what]) => ({ net: parseCidr(cidr!)!, what: what! }))

/** A refusal of cluster.yaml or a flag: what is wrong; what to do. */
export const bad = (what: string, fix: string): never => {
  throw new KaError('EUSAGE', `${what}; ${fix}`)
}
