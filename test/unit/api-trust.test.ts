// api_tls and api_hosts in offsite.yaml, for the daemon and for the CLI's light
// reader (issue 15, item 8); the behaviour is tested in test/integration/api-trust.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/config.js';
import { loadClientConfig } from '../../src/config/client.js';
import { tempDir } from '../helpers/run.js';

const base = 'node: a\nstate: ./s\nnbd: 127.0.0.1:10809\napi: 127.0.0.1:7780\n';
const volumes = 'volumes:\n  v: { path: ./v.img, size: 1MiB, role: primary }\n';

test('api_tls defaults to plain HTTP; api_hosts are names, kept in lower case', async () => {
  const plain = parseConfig(base + volumes, '/tmp/offsite.yaml');
  assert.equal(plain.apiTls, false);
  assert.deepEqual(plain.apiHosts, []);
  const c = parseConfig(`${base}api_tls: true\napi_hosts: [Node1.Example.com., dr-b]\n${volumes}`, '/tmp/offsite.yaml');
  assert.equal(c.apiTls, true);
  assert.deepEqual(c.apiHosts, ['node1.example.com', 'dr-b']);
  assert.throws(() => parseConfig(`${base}api_tls: yes please\n${volumes}`, '/tmp/offsite.yaml'), /offsite\.yaml:5: api_tls:/);
  assert.throws(() => parseConfig(`${base}api_hosts: ["evil.example/x"]\n${volumes}`, '/tmp/offsite.yaml'),
    /offsite\.yaml:5: api_hosts\.0: a host name is letters, digits/);
  // The CLI reads api_tls without the full loader.
  const dir = tempDir('client');
  const file = path.join(dir, 'offsite.yaml');
  fs.writeFileSync(file, `${base}api_tls: true\n${volumes}`);
  assert.equal((await loadClientConfig(file)).apiTls, true);
  fs.writeFileSync(file, base + volumes);
  assert.equal((await loadClientConfig(file)).apiTls, false);
});
