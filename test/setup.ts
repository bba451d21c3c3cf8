// Tests never inherit the developer's proxy or registry credentials: a test that wants a
// proxy sets it itself. Both spellings, as undici reads both.
for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'DOCKER_CONFIG', 'XDG_CACHE_HOME']) {
  delete process.env[name]
  delete process.env[name.toLowerCase()]
}
