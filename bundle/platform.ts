import { KaError } from './errors.js'

/** The platforms a bundle can be built for. */
export const PLATFORMS = ['linux/amd64', 'linux/arm64'] as const
export type Platform = (typeof PLATFORMS)[number]
export type Arch = 'amd64' | 'arm64'

export function parsePlatform(value: string, where: string): Platform {
  if ((PLATFORMS as readonly string[]).includes(value)) return value as Platform
  throw new KaError('EUSAGE', `${where}: unknown platform ${JSON.stringify(value)}; use one of ${PLATFORMS.join(', ')}`)
}

export const archOf = (p: Platform): Arch => p.slice('linux/'.length) as Arch
