// The OpenAPI 3.1 description of the HTTP API, served at /api/v1/openapi.json.
import { ACTION_NAMES } from './actions.js';

export function openApiDocument(version: string): Record<string, unknown> {
  const err = { description: 'refused or failed: { error } says why', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  const json = (ref: string, description: string) => ({ description, content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } });
  const string = { type: 'string' };
  const number = { type: 'number' };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Offsite node API',
      version,
      description: 'Status, events, history and actions of one Offsite node (docs/API.md). Reads are open; every POST needs the bearer token from ' +
        '`offsite init` (`offsite token`).',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: { type: 'object', required: ['error'], properties: { error: string } },
        ActionResult: { type: 'object', required: ['volume', 'message'], properties: { volume: string, message: string }, additionalProperties: true },
        Status: {
          type: 'object',
          required: ['node', 'version', 'uptimeSeconds', 'volumes'],
          properties: {
            node: string,
            version: string,
            uptimeSeconds: number,
            volumes: {
              type: 'array',
              items: {
                type: 'object',
                description: 'one volume: role, peer, link, backlogBytes, lagSeconds, consistent, tracking, resync*, verify, checkpoint, drill, paused, ' +
                  'wireBytes, hostBytes, iscsi, … (docs/API.md)',
              },
            },
            groups: {
              type: 'array',
              items: {
                type: 'object',
                description: 'one consistency group: name, members, role, consistent, reason, groupPoint, together, lagSeconds (docs/GROUPS.md)',
              },
            },
            unavailable: {
              type: 'array',
              items: {
                type: 'object',
                description: 'a configured volume this node could not open: name, error, forSeconds, attempts, opening ' +
                  '(docs/API.md, "A volume that does not open")',
              },
            },
          },
        },
        Event: {
          type: 'object',
          required: ['time', 'level', 'msg'],
          properties: {
            time: { type: 'number', description: 'ms since the epoch' }, level: { enum: ['info', 'warn', 'error', 'fatal'] }, msg: string, volume: string,
            peer: string,
          },
        },
        HistoryRow: {
          type: 'object',
          properties: {
            minute: string, hostBytes: number, records: number, journalUsed: number, journalCapacity: number, backlogBytes: number, mode: string,
          },
        },
      },
    },
    paths: {
      '/api/v1/status': { get: { summary: 'the node and its volumes', responses: { 200: json('Status', 'status') } } },
      '/api/v1/events': {
        get: {
          summary: 'recent operator events (log lines at info and above), oldest first',
          parameters: [{ name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }],
          responses: {
            200: {
              description: 'events',
              content: {
                'application/json': { schema: { type: 'object', properties: { events: { type: 'array', items: { $ref: '#/components/schemas/Event' } } } } },
              },
            },
          },
        },
      },
      '/api/v1/volumes/{name}/history': {
        get: {
          summary: 'the per-minute write history a primary keeps (the last `minutes`)',
          parameters: [
            { name: 'name', in: 'path', required: true, schema: string },
            { name: 'minutes', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 43200, default: 1440 } },
          ],
          responses: {
            200: {
              description: 'rows',
              content: {
                'application/json': {
                  schema: { type: 'object', properties: { history: { type: 'array', items: { $ref: '#/components/schemas/HistoryRow' } } } },
                },
              },
            },
            404: err,
          },
        },
      },
      '/api/v1/stream': {
        get: {
          summary: 'live feed for the dashboard (server-sent events): `status` every second (the Status JSON), `events` at connect (recent events, oldest ' +
            'first), then `event` per new operator event; at most 32 streams, a client that falls 1 MiB behind is dropped',
          responses: { 200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: string } } }, 503: err },
        },
      },
      '/api/v1/checkpoints': { get: { summary: 'checkpoints held on this node', responses: { 200: { description: 'checkpoints' } } } },
      '/api/v1/reload': {
        post: {
          summary: 're-read the config; link rates, schedules and weights change live',
          security: [{ bearer: [] }],
          responses: { 200: { description: '{ message }' }, 400: err, 401: err },
        },
      },
      '/api/v1/volumes/{name}/{action}': {
        post: {
          summary: 'an action on a volume',
          security: [{ bearer: [] }],
          parameters: [
            { name: 'name', in: 'path', required: true, schema: string },
            { name: 'action', in: 'path', required: true, schema: { enum: ACTION_NAMES } },
          ],
          requestBody: {
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    label: string, hold: { type: ['string', 'number'] },
                    force: { type: 'boolean' }, discardMyData: { type: 'boolean' }, repair: { type: 'boolean' },
                  },
                },
              },
            },
          },
          responses: { 200: json('ActionResult', 'done'), 400: err, 401: err, 404: err, 409: err, 500: err, 503: err },
        },
      },
      '/metrics': { get: { summary: 'Prometheus text format', responses: { 200: { description: 'metrics', content: { 'text/plain': {} } } } } },
    },
  };
}
