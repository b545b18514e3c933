'use strict';
// Creates a service, pauses, resumes and deletes it, waiting on each operation with
// WaitOperation, and prints one JSON line per step. Then shows two rich errors.
//
//   node clients/node/example.js [ENDPOINT]
//
// ENDPOINT defaults to $SCCTL_ENDPOINT or 127.0.0.1:50051; the API key (which decides the
// account) comes from $SERVICECONTROL_API_KEY or .servicecontrol/credentials; the image to $EXAMPLE_IMAGE or hello-web:1.0
// (push one with `servicecontrol images push --sample hello-web:1.0`), the service name
// to $EXAMPLE_SERVICE_NAME or a random one.

const crypto = require('node:crypto');
const { DEFAULT_ENDPOINT, ServiceControlClient } = require('./client');

const endpoint = process.argv[2] || process.env.SCCTL_ENDPOINT || DEFAULT_ENDPOINT;
const image = process.env.EXAMPLE_IMAGE || 'hello-web:1.0';
const serviceName = process.env.EXAMPLE_SERVICE_NAME || `node-${crypto.randomBytes(4).toString('hex')}`;

function print(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function step(client, name, call) {
  const requested = await call();
  print({
    step: name,
    phase: 'requested',
    serviceArn: requested.service.serviceArn,
    serviceStatus: requested.service.status,
    operationId: requested.operationId,
  });
  const operation = await client.waitForOperation(requested.operationId, { timeoutMs: 60000 });
  const { service } = await client.describeService({ serviceArn: requested.service.serviceArn });
  print({
    step: name,
    phase: 'done',
    serviceArn: service.serviceArn,
    serviceStatus: service.status,
    operationType: operation.type,
    operationStatus: operation.status,
  });
  if (operation.status !== 'SUCCEEDED') {
    throw new Error(`${name} ended ${operation.status}: ${operation.error && operation.error.message}`);
  }
  return service;
}

async function main() {
  const client = new ServiceControlClient(endpoint);
  try {
    const service = await step(client, 'create', () =>
      client.createService({
        serviceName,
        sourceConfiguration: { imageRepository: { imageIdentifier: image } },
        // An idempotency key: repeating this exact call returns the first answer.
        requestId: crypto.randomUUID(),
      }),
    );
    const serviceArn = service.serviceArn;
    await step(client, 'pause', () => client.pauseService({ serviceArn, requestId: crypto.randomUUID() }));
    await step(client, 'resume', () => client.resumeService({ serviceArn, requestId: crypto.randomUUID() }));
    await step(client, 'delete', () => client.deleteService({ serviceArn, requestId: crypto.randomUUID() }));

    // Errors carry a google.rpc.Status; the client decodes its details.
    try {
      await client.describeService({ serviceArn: `${serviceArn.slice(0, -32)}${'0'.repeat(32)}` });
    } catch (err) {
      print({
        step: 'error',
        name: err.name,
        codeName: err.codeName,
        reason: err.reason,
        domain: err.domain,
        metadata: err.metadata,
      });
    }
    // Bad input lists every offending field (a google.rpc.BadRequest detail).
    try {
      await client.createService({
        serviceName: 'x',
        sourceConfiguration: { imageRepository: { imageIdentifier: image } },
        instanceConfiguration: { cpu: '3 vCPU' },
        validateOnly: true,
      });
    } catch (err) {
      print({ step: 'bad-request', name: err.name, reason: err.reason, fieldViolations: err.fieldViolations });
    }
  } finally {
    client.close();
  }
}

main().catch((err) => {
  process.stderr.write(`${JSON.stringify({ step: 'failed', name: err.name, message: err.message, reason: err.reason })}\n`);
  process.exit(1);
});
