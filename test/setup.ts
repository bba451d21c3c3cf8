// Tests never inherit the developer's proxy, registry credentials or colour settings: a test
// that wants one sets it itself. Both spellings, as undici reads both.
for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'DOCKER_CONFIG', 'XDG_CACHE_HOME', 'NO_COLOR', 'FORCE_COLOR']) {
  delete process.env[name]
  delete process.env[name.toLowerCase()]
}
