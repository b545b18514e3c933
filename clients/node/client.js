'use strict';
// A promise-based Node.js client of ServiceControl, loaded from the contract in protos/ at
// run time (no generated code), with rich errors decoded into reason, metadata and field
// violations.
//
//   const { ServiceControlClient } = require('./client');
//   const client = new ServiceControlClient('127.0.0.1:50051'); // key: SERVICECONTROL_API_KEY
//   const { service, operationId } = await client.deleteService({ serviceArn });
//   await client.waitForOperation(operationId);
//
// Method names are the RPCs' in lowerCamelCase, request and response fields too (the
// proto-loader default); enums are their names, int64 values strings.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
// protobufjs is proto-loader's own dependency; used here to decode error details.
const protobuf = require('protobufjs');

const DEFAULT_PROTOS = path.resolve(__dirname, '..', '..', 'protos');
// google/rpc/error_details.proto is not part of the contract's imports (the API only
// refers to it in comments), so protos/ does not carry it; this copy lets the client
// decode ErrorInfo, BadRequest, QuotaFailure and PreconditionFailure details.
const LOCAL_PROTOS = path.resolve(__dirname, 'protos');
const API_KEY_ENV = 'SERVICECONTROL_API_KEY';
const DATA_DIR_ENV = 'SERVICECONTROL_DATA_DIR';
const DEFAULT_DATA_DIR = '.servicecontrol';
const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
// The gRPC metadata key that selects the region a call acts in.
const REGION_METADATA = 'x-servicecontrol-region';
const DEFAULT_ENDPOINT = '127.0.0.1:50051';
const TERMINAL_OPERATION_STATUSES = new Set([
  'SUCCEEDED', 'FAILED', 'ROLLBACK_SUCCEEDED', 'ROLLBACK_FAILED',
]);
// The most a single WaitOperation waits (the server's cap); longer waits loop.
const MAX_SERVER_WAIT_MS = 600000;
const WAIT_DEADLINE_MARGIN_MS = 5000;

// Exception names as in the Python client (App Runner's, where App Runner has one).
const NAME_BY_CODE = {
  [grpc.status.INVALID_ARGUMENT]: 'InvalidRequestException',
  [grpc.status.NOT_FOUND]: 'ResourceNotFoundException',
  [grpc.status.FAILED_PRECONDITION]: 'InvalidStateException',
  [grpc.status.RESOURCE_EXHAUSTED]: 'ServiceQuotaExceededException',
  [grpc.status.ALREADY_EXISTS]: 'ConflictException',
  [grpc.status.ABORTED]: 'PreconditionFailedException',
  [grpc.status.UNAVAILABLE]: 'ServiceUnavailableException',
  [grpc.status.DEADLINE_EXCEEDED]: 'RequestTimeoutException',
  [grpc.status.UNAUTHENTICATED]: 'AccessDeniedException',
  [grpc.status.PERMISSION_DENIED]: 'AccessDeniedException',
};
// The ErrorInfo reasons of a throttled call: retried after the server's RetryInfo delay.
const THROTTLED_REASONS = new Set(['RATE_LIMITED', 'BACKLOG_FULL']);
const DEFAULT_THROTTLE_RETRIES = 5;
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

class ServiceControlError extends Error {
  constructor(message, fields) {
    super(message);
    this.name = fields.name;
    this.code = fields.code;
    this.codeName = fields.codeName;
    this.reason = fields.reason;
    this.domain = fields.domain;
    this.metadata = fields.metadata;
    this.fieldViolations = fields.fieldViolations;
    this.quotaViolations = fields.quotaViolations;
    this.preconditionViolations = fields.preconditionViolations;
    this.details = fields.details;
  }
}

// RESOURCE_EXHAUSTED with reason RATE_LIMITED or BACKLOG_FULL: the server refused the call
// before running it (nothing changed); retryAfterMs is its RetryInfo delay in milliseconds
// (null when it sent none). Named as in the Python client and App Runner.
class ThrottlingException extends ServiceControlError {
  constructor(message, fields, retryAfterMs) {
    super(message, fields);
    this.retryAfterMs = retryAfterMs;
  }
}

class OperationTimeoutError extends Error {
  constructor(message, operation) {
    super(message);
    this.name = 'OperationTimeoutError';
    this.operation = operation;
  }
}

let detailsRoot = null;

function errorDetailsRoot(protoDir) {
  if (detailsRoot === null) {
    const root = new protobuf.Root();
    const dirs = [LOCAL_PROTOS, path.join(protoDir, 'third_party')];
    root.resolvePath = (origin, target) => {
      for (const dir of dirs) {
        const candidate = path.join(dir, target);
        if (fs.existsSync(candidate)) return candidate;
      }
      return protobuf.util.path.resolve(origin, target);
    };
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], {
      keepCase: true,
    });
    detailsRoot = root;
  }
  return detailsRoot;
}

// Decodes the google.rpc.Status a failed call carries in its trailers.
function decodeStatusDetails(buffer, protoDir = DEFAULT_PROTOS) {
  const root = errorDetailsRoot(protoDir);
  const Status = root.lookupType('google.rpc.Status');
  const status = Status.decode(buffer);
  const details = status.details.map((any) => {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    let type;
    try {
      type = root.lookupType(typeName);
    } catch {
      return { '@type': any.type_url };
    }
    const body = type.toObject(type.decode(any.value), { longs: String, enums: String });
    return { '@type': any.type_url, ...body };
  });
  return { code: status.code, message: status.message, details };
}

function toServiceControlError(err, protoDir = DEFAULT_PROTOS) {
  const fields = {
    code: err.code,
    codeName: CODE_NAMES[err.code] || 'UNKNOWN',
    name: NAME_BY_CODE[err.code] || 'InternalServiceErrorException',
    reason: '',
    domain: '',
    metadata: {},
    fieldViolations: [],
    quotaViolations: [],
    preconditionViolations: [],
    details: [],
  };
  let message = err.details || err.message;
  let retryAfterMs = null;
  const raw = err.metadata ? err.metadata.get(STATUS_DETAILS_KEY) : [];
  if (raw.length > 0) {
    const status = decodeStatusDetails(raw[0], protoDir);
    message = status.message || message;
    fields.details = status.details;
    for (const detail of status.details) {
      const type = detail['@type'].split('/').pop();
      if (type === 'google.rpc.ErrorInfo') {
        fields.reason = detail.reason || '';
        fields.domain = detail.domain || '';
        fields.metadata = detail.metadata || {};
      } else if (type === 'google.rpc.BadRequest') {
        fields.fieldViolations.push(...(detail.field_violations || []));
      } else if (type === 'google.rpc.QuotaFailure') {
        fields.quotaViolations.push(...(detail.violations || []));
      } else if (type === 'google.rpc.PreconditionFailure') {
        fields.preconditionViolations.push(...(detail.violations || []));
      } else if (type === 'google.rpc.RetryInfo' && detail.retry_delay) {
        const delay = detail.retry_delay;
        retryAfterMs = Number(delay.seconds || 0) * 1000 + Number(delay.nanos || 0) / 1e6;
      }
    }
  }
  if (err.code === grpc.status.RESOURCE_EXHAUSTED && THROTTLED_REASONS.has(fields.reason)) {
    return new ThrottlingException(message, { ...fields, name: 'ThrottlingException' }, retryAfterMs);
  }
  return new ServiceControlError(message, fields);
}

// How long to wait before retrying a throttled call: the server's delay, never less, plus
// up to half of it again at random, so that throttled clients do not all return at once.
function throttlePauseMs(error, attempt) {
  if (error.retryAfterMs === null) return 100 * 2 ** attempt * (1 + Math.random());
  return error.retryAfterMs * (1 + Math.random() / 2);
}

function lowerCamel(name) {
  return name.charAt(0).toLowerCase() + name.slice(1);
}

function pem(value) {
  if (value === undefined || value === null) return null;
  return Buffer.isBuffer(value) ? value : fs.readFileSync(value);
}

function channelCredentials(options) {
  if (options.credentials) return options.credentials;
  if (!options.tls) return grpc.credentials.createInsecure();
  const tls = options.tls === true ? {} : options.tls;
  if (Boolean(tls.cert) !== Boolean(tls.key)) {
    throw new Error('tls.cert and tls.key go together: give both or neither');
  }
  return grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

// The API key (`<key id>.<secret>`) from SERVICECONTROL_API_KEY, else from the credentials
// file the embedded server writes on first start ($SERVICECONTROL_DATA_DIR/credentials, by
// default .servicecontrol/credentials); undefined when there is none.
function defaultApiKey(env = process.env, cwd = process.cwd()) {
  if (env[API_KEY_ENV]) return env[API_KEY_ENV];
  const file = path.resolve(cwd, env[DATA_DIR_ENV] || DEFAULT_DATA_DIR, 'credentials');
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0 && line.slice(0, at).trim() === API_KEY_ENV) return line.slice(at + 1).trim();
  }
  return undefined;
}

class ServiceControlClient {
  // options: apiKey (`<key id>.<secret>`, sent as `authorization: Bearer …`; the key decides
  // the account; default: defaultApiKey()), region (the region every call acts in, sent as
  // the `x-servicecontrol-region` metadata; default: the server's default region), tls (true, or { ca, cert, key }: PEM file paths
  // or Buffers; ca: roots to trust, system roots when absent; cert and key: a client
  // certificate for mutual TLS), credentials (grpc.credentials, instead of tls; insecure by
  // default), timeoutMs (each unary call's deadline, retries included), protoDir (the
  // contract's protos/), retryThrottled (default true: a call refused with RATE_LIMITED or
  // BACKLOG_FULL is retried after the server's RetryInfo delay plus jitter, at most
  // throttleRetries times (default 5) and never past its deadline; false rejects with the
  // ThrottlingException at once). The server refuses a throttled call before running it,
  // so mutations are retried too: a retry cannot apply one twice.
  constructor(target = DEFAULT_ENDPOINT, options = {}) {
    this.protoDir = options.protoDir || DEFAULT_PROTOS;
    this.timeoutMs = options.timeoutMs ?? 30000;
    this.retryThrottled = options.retryThrottled ?? true;
    this.throttleRetries = options.throttleRetries ?? DEFAULT_THROTTLE_RETRIES;
    const definition = protoLoader.loadSync('servicecontrol/v1/service_control.proto', {
      includeDirs: [this.protoDir, path.join(this.protoDir, 'third_party')],
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const ServiceControl = grpc.loadPackageDefinition(definition).servicecontrol.v1.ServiceControl;
    this.stub = new ServiceControl(target, channelCredentials(options));
    this.metadata = new grpc.Metadata();
    const apiKey = options.apiKey ?? defaultApiKey();
    if (apiKey) this.metadata.set('authorization', `Bearer ${apiKey}`);
    this.region = options.region || undefined;
    if (this.region) this.metadata.set(REGION_METADATA, this.region);
    this.methods = [];
    for (const [name, method] of Object.entries(ServiceControl.service)) {
      const jsName = lowerCamel(name);
      this.methods.push(jsName);
      if (method.requestStream) {
        this[jsName] = (requests, callOptions = {}) => this.clientStream(name, requests, callOptions);
      } else {
        this[jsName] = method.responseStream
          ? (request = {}, callOptions = {}) => this.stream(name, request, callOptions)
          : (request = {}, callOptions = {}) => this.unary(name, request, callOptions);
      }
    }
  }

  // One unary call; rejects with a ServiceControlError. callOptions.timeoutMs overrides the
  // client's deadline, callOptions.retryThrottled the client's choice of retrying
  // throttled calls.
  async unary(name, request, callOptions = {}) {
    const timeoutMs = callOptions.timeoutMs ?? this.timeoutMs;
    const retry = callOptions.retryThrottled ?? this.retryThrottled;
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.attempt(name, request, deadline);
      } catch (err) {
        if (!(err instanceof ThrottlingException) || !retry || attempt >= this.throttleRetries) {
          throw err;
        }
        const pauseMs = throttlePauseMs(err, attempt);
        if (Date.now() + pauseMs >= deadline) throw err;
        await new Promise((resume) => setTimeout(resume, pauseMs));
      }
    }
  }

  attempt(name, request, deadline) {
    return new Promise((resolve, reject) => {
      this.stub[name](
        request,
        this.metadata,
        { deadline },
        (err, response) => (err ? reject(toServiceControlError(err, this.protoDir)) : resolve(response)),
      );
    });
  }

  // A client stream (PushImage): sends every request of an iterable or async iterable,
  // then resolves with the one response. No deadline unless callOptions.timeoutMs.
  clientStream(name, requests, callOptions = {}) {
    const options = callOptions.timeoutMs ? { deadline: Date.now() + callOptions.timeoutMs } : {};
    return new Promise((resolve, reject) => {
      const call = this.stub[name](this.metadata, options, (err, response) =>
        err ? reject(toServiceControlError(err, this.protoDir)) : resolve(response),
      );
      (async () => {
        for await (const request of requests) {
          if (!call.write(request)) await new Promise((drained) => call.once('drain', drained));
        }
        call.end();
      })().catch((err) => {
        call.cancel();
        reject(err);
      });
    });
  }

  // A server stream as an async iterator of responses; breaking out cancels the call.
  async *stream(name, request, callOptions = {}) {
    const options = callOptions.timeoutMs ? { deadline: Date.now() + callOptions.timeoutMs } : {};
    const call = this.stub[name](request, this.metadata, options);
    try {
      for await (const response of call) yield response;
    } catch (err) {
      throw toServiceControlError(err, this.protoDir);
    } finally {
      call.cancel();
    }
  }

  // Waits until the operation ends and resolves with it (check its status), looping on
  // WaitOperation: the server answers the moment the operation ends, so no polling.
  async waitForOperation(operationId, { timeoutMs = 600000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let operation = null;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        const status = operation ? operation.status : 'unknown';
        throw new OperationTimeoutError(
          `operation ${operationId} did not end within ${timeoutMs} ms (last seen ${status})`,
          operation,
        );
      }
      const waitMs = Math.min(remaining, MAX_SERVER_WAIT_MS);
      const response = await this.unary(
        'WaitOperation',
        {
          operationId,
          timeout: { seconds: String(Math.floor(waitMs / 1000)), nanos: (waitMs % 1000) * 1e6 },
        },
        { timeoutMs: waitMs + WAIT_DEADLINE_MARGIN_MS },
      );
      operation = response.operation;
      if (TERMINAL_OPERATION_STATUSES.has(operation.status)) return operation;
    }
  }

  close() {
    this.stub.close();
  }
}

module.exports = {
  DEFAULT_ENDPOINT,
  OperationTimeoutError,
  ServiceControlClient,
  ServiceControlError,
  ThrottlingException,
  decodeStatusDetails,
  defaultApiKey,
  toServiceControlError,
};
