import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseImageRef } from '../../bundle/reference.js'
import { DockerCredentials } from '../../builder/images/credentials.js'
import { applyMirrors, httpDefaults } from '../../builder/download/http.js'
import { readMirrorsFile } from '../../builder/mirrors.js'
import { RegistryClient } from '../../builder/images/registry.js'
import { RELEASES } from '../../builder/packages/releases.js'
import { REPO } from '../support/fake-upstream.js'

describe('the China mirrors profile', () => {
  it('maps every upstream the default lock uses, and coredns flat where the mirror keeps it flat', async () => {
    const { mirrors, registryMirrors } = await readMirrorsFile(join(REPO, 'manifests', 'mirrors', 'china.yaml'))
    expect(applyMirrors('https://dl.k8s.io/release/v1.29.3/bin/linux/amd64/kubeadm', mirrors)).toBe(
      'https://files.m.daocloud.io/dl.k8s.io/release/v1.29.3/bin/linux/amd64/kubeadm',
    )
    expect(applyMirrors('https://nodejs.org/dist/v24.11.1/SHASUMS256.txt', mirrors)).toBe('https://npmmirror.com/mirrors/node/v24.11.1/SHASUMS256.txt')
    expect(applyMirrors('https://github.com/containerd/containerd/releases/download/v1.7.16/x.tar.gz', mirrors)).toMatch(
      /^https:\/\/files\.m\.daocloud\.io\/github\.com\/containerd\//,
    )
    const client = new RegistryClient({ http: httpDefaults(), mirrors: registryMirrors, credentials: new DockerCredentials({}) })
    const ep = (ref: string) => {
      const e = client.endpoint(parseImageRef(ref))
      return `${e.base}/${e.repo}`
    }
    expect(ep('registry.k8s.io/kube-apiserver:v1.29.3')).toBe('https://registry.cn-hangzhou.aliyuncs.com/google_containers/kube-apiserver')
    expect(ep('registry.k8s.io/coredns/coredns:v1.11.1')).toBe('https://registry.cn-hangzhou.aliyuncs.com/google_containers/coredns')
    expect(ep('docker.io/calico/node:v3.28.0')).toBe('https://docker.m.daocloud.io/calico/node')
    expect(ep('quay.io/x/y:1')).toBe('https://quay.io/x/y')
  })

  it("maps every OS package archive of the release table, for every architecture (Kylin's is in China already)", async () => {
    const { mirrors } = await readMirrorsFile(join(REPO, 'manifests', 'mirrors', 'china.yaml'))
    const archives = RELEASES.flatMap((r) =>
      (r.family === 'rpm' ? r.arches : (['amd64', 'arm64'] as const)).flatMap((arch) =>
        r.family === 'deb'
          ? [r.archive(arch), ...r.suites.map((s) => s.archive?.(arch)).filter((a) => a !== undefined)]
          : r.repos.map((repo) => repo.url(arch)),
      ),
    ).filter((url) => !url.includes('old-releases.ubuntu.com') && !url.includes('update.cs2c.com.cn'))
    expect(archives.length).toBeGreaterThan(20)
    expect(archives.filter((url) => applyMirrors(url, mirrors) === url)).toEqual([])
    expect(applyMirrors('http://deb.debian.org/debian/pool/main/s/socat/socat_1.7.4.4-2_amd64.deb', mirrors)).toBe(
      'https://mirrors.tuna.tsinghua.edu.cn/debian/pool/main/s/socat/socat_1.7.4.4-2_amd64.deb',
    )
    expect(applyMirrors('https://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/repodata/repomd.xml', mirrors)).toBe(
      'https://mirrors.aliyun.com/rockylinux/9/BaseOS/x86_64/os/repodata/repomd.xml',
    )
  })
})
