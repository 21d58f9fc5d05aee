// Session isolation through a transaction pooler with node-postgres (driven by
// tests/e2e/isolation_drivers.rs).
//
// The changes run as plain queries (simple protocol); the checks as named queries (parsed once
// per connection, then only bound and executed). Otherwise as
// tests/compat/python/isolation_psycopg.py, with the same environment.
'use strict';

const fs = require('fs');
const { Client } = require('pg');
const LABEL = `node-postgres ${require('pg/package.json').version}`;
const E = process.env;
const notices = [];

async function connect() {
  const client = new Client({
    host: E.COMPAT_HOST || '127.0.0.1',
    port: Number(E.COMPAT_PORT),
    user: E.COMPAT_USER,
    password: E.COMPAT_PASSWORD,
    database: E.COMPAT_DB,
    ssl: { ca: fs.readFileSync(E.COMPAT_CA, 'utf8') },
    connectionTimeoutMillis: 10000,
    query_timeout: 60000,
  });
  client.on('notice', (n) => notices.push(`${n.severity}: ${n.message}`));
  await client.connect();
  return client;
}

async function row(client, name, text) {
  const r = await client.query({ name, text, rowMode: 'array' });
  return r.rows[0].map((v) => (v === null ? '' : String(v))).join('|');
}

const lines = (s) => s.split('\n').filter((l) => l.trim() !== '');

async function main() {
  const failures = [];
  const changes = lines(E.ISO_CHANGES);
  for (const change of changes) {
    const first = await connect();
    await first.query(change);
    await first.end();
    const second = await connect();
    const got = await row(second, 'iso_check', E.ISO_CHECK);
    await second.end();
    if (got !== E.ISO_DEFAULTS) {
      failures.push(`after ${JSON.stringify(change)} a new connection sees ${JSON.stringify(got)}, want ${JSON.stringify(E.ISO_DEFAULTS)}`);
    }
  }

  const mine = await connect();
  const other = await connect();
  for (const change of lines(E.ISO_OWN_CHANGES)) await mine.query(change);
  for (let i = 0; i < 3; i++) {
    let got = await row(other, 'iso_check', E.ISO_CHECK);
    if (got !== E.ISO_DEFAULTS) failures.push(`round ${i}: the other connection sees ${JSON.stringify(got)}`);
    got = await row(mine, 'iso_own', E.ISO_OWN_CHECK);
    if (got !== E.ISO_OWN_WANT) failures.push(`round ${i}: own settings in autocommit ${JSON.stringify(got)}, want ${JSON.stringify(E.ISO_OWN_WANT)}`);
    await mine.query('BEGIN');
    got = await row(mine, 'iso_own', E.ISO_OWN_CHECK);
    await mine.query('COMMIT');
    if (got !== E.ISO_OWN_WANT) failures.push(`round ${i}: own settings in a transaction ${JSON.stringify(got)}, want ${JSON.stringify(E.ISO_OWN_WANT)}`);
  }
  await mine.end();
  await other.end();
  for (const n of notices) failures.push(`unexpected notice ${JSON.stringify(n)}`);

  if (failures.length > 0) {
    for (const f of failures) console.log(`FAIL ${LABEL}: ${f}`);
    process.exit(1);
  }
  console.log(`OK ${LABEL}: ${changes.length} changes did not leak; own settings followed the connection`);
}

main().catch((e) => {
  console.log(`FAIL ${LABEL}: ${e.stack || e}`);
  process.exit(1);
});
