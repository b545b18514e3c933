// The delete flow through the AWS SDK for JavaScript v3 against ServiceControl's App
// Runner endpoint: create, describe, delete, then describe until DELETED. Signed with
// SigV4 by the SDK, with the API key's id and secret as the access key. Prints one JSON
// line per step.
//
//   node apprunner_delete_flow.js <endpoint> <service name>
//   (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment)
"use strict";

const {
  AppRunnerClient,
  CreateServiceCommand,
  DeleteServiceCommand,
  DescribeServiceCommand,
} = require("@aws-sdk/client-apprunner");

const [endpoint, serviceName] = process.argv.slice(2);

function print(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

async function main() {
  const client = new AppRunnerClient({
    endpoint,
    region: "us-east-1",
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
    },
    maxAttempts: 1,
  });
  const created = await client.send(
    new CreateServiceCommand({
      ServiceName: serviceName,
      SourceConfiguration: {
        ImageRepository: { ImageIdentifier: "hello-web:1.0", ImageRepositoryType: "ECR" },
      },
      InstanceConfiguration: { Cpu: "1024", Memory: "2 GB" },
    }),
  );
  const arn = created.Service.ServiceArn;
  print("create", { arn, status: created.Service.Status, operationId: created.OperationId });

  const deadline = Date.now() + 60000;
  async function waitFor(status) {
    for (;;) {
      const { Service } = await client.send(new DescribeServiceCommand({ ServiceArn: arn }));
      if (Service.Status === status) return Service;
      if (Date.now() > deadline) throw new Error(`${arn} never reached ${status}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  const running = await waitFor("RUNNING");
  print("describe", {
    status: running.Status,
    cpu: running.InstanceConfiguration.Cpu,
    memory: running.InstanceConfiguration.Memory,
    createdAt: running.CreatedAt instanceof Date,
  });

  const deleted = await client.send(new DeleteServiceCommand({ ServiceArn: arn }));
  print("delete", { status: deleted.Service.Status, operationId: deleted.OperationId });
  const gone = await waitFor("DELETED");
  print("deleted", { status: gone.Status, deletedAt: gone.DeletedAt instanceof Date });

  try {
    await client.send(new DescribeServiceCommand({ ServiceArn: arn.replace(/[0-9a-f]{32}$/, "0".repeat(32)) }));
    print("missing", { error: null });
  } catch (err) {
    print("missing", { error: err.name, status: err.$metadata.httpStatusCode });
  }
}

main().catch((err) => {
  process.stderr.write(`${err.name}: ${err.message}\n`);
  process.exit(1);
});
