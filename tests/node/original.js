// Drives the original kms-env 0.3.0 library (ukayani/kms-env) for the compatibility tests, with
// its KMS client pointed at the test moto server.
//
//   node original.js init  FILE KEY_ID
//   node original.js add   FILE K=V...
//   node original.js show  FILE            (prints the decrypted file)
//   node original.js legacy FILE K=V...     (adds values in the legacy createCipher format)
//   node original.js decrypt               (prints `export` lines, as `kms-env decrypt` did)
//
// Endpoint, region and credentials come from AWS_ENDPOINT_URL, AWS_REGION,
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
'use strict';
const crypto = require('crypto');
const AWS = require('aws-sdk');
const { KMSEnv } = require('kms-env');
const fs = require('kms-env/lib/file.utils');

const client = new AWS.KMS({
  apiVersion: '2014-11-01',
  endpoint: process.env.AWS_ENDPOINT_URL,
  region: process.env.AWS_REGION,
  accessKeyId: process.env.AWS_ACCESS_KEY_ID,
  secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
});
const kmsEnv = KMSEnv.create(client, fs);

// What the original's deprecated path wrote: crypto.createCipher (EVP_BytesToKey, MD5).
const legacy = async (file, entries) => {
  const content = await fs.read(file);
  const lines = content.trim().split('\n');
  const dataKeyLine = lines.find((l) => l.startsWith('KMS_DATA_KEY='));
  const blob = Buffer.from(dataKeyLine.slice('KMS_DATA_KEY='.length), 'base64');
  const { Plaintext } = await client.decrypt({ CiphertextBlob: blob }).promise();
  for (const entry of entries) {
    const i = entry.indexOf('=');
    const cipher = crypto.createCipher('aes-256-ctr', Plaintext);
    const hex = cipher.update(entry.slice(i + 1), 'utf8', 'hex') + cipher.final('hex');
    lines.push(`${entry.slice(0, i)}=secure:${hex}`);
  }
  await fs.write(file, lines.join('\n'));
};

const main = async () => {
  const [op, file, ...rest] = process.argv.slice(2);
  switch (op) {
    case 'init': return kmsEnv.init(rest[0], file);
    case 'add': return kmsEnv.add(file, rest);
    case 'show': return process.stdout.write(await kmsEnv.show(file));
    case 'legacy': return legacy(file, rest);
    case 'decrypt': return process.stdout.write(await kmsEnv.decrypt(process.env));
    default: throw new Error(`unknown operation ${op}`);
  }
};

main().catch((err) => {
  console.error(`original kms-env failed: ${err.message}`);
  process.exit(1);
});
