// Loaded with `node --import` by the benchmarks: reports the process's peak RSS and its CPU
// time (every thread's, user and system) at exit, as `bytes microseconds`.
import { writeFileSync } from 'node:fs'
process.on('exit', () => {
  const u = process.resourceUsage()
  if (process.env.KA_RSS_FILE) writeFileSync(process.env.KA_RSS_FILE, `${u.maxRSS * 1024} ${u.userCPUTime + u.systemCPUTime}`)
})
