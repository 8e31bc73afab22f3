// The volunteer API: lease the next unit, send an answer. The volunteer cookie authenticates.

export class ApiError extends Error {
  constructor(message, status, retryable) {
    super(message);
    this.status = status; // 0 when the server was not reached
    this.retryable = retryable;
  }
}

async function post(url, body) {
  const init = {method: 'POST', credentials: 'same-origin', headers: {Accept: 'application/json'},
    signal: AbortSignal.timeout?.(30_000)}; // a hung request counts as a failed one
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError('No connection to the server.', 0, true);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const retryable = response.status >= 500 || response.status === 429;
    throw new ApiError(data?.message || `The server answered ${response.status}.`, response.status, retryable);
  }
  return data;
}

export const nextUnit = (base, projectId) => post(`${base}/projects/${projectId}/next`);

export const sendAnswer = (base, a) =>
  post(`${base}/units/${a.unitId}/answers`, {answer_id: a.answerId, payload: a.payload, duration_ms: a.durationMs});

// crypto.randomUUID needs a secure context; getRandomValues works everywhere.
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// An answer not yet stored survives a reload: it is kept until the server has it.
const key = (projectId) => `microtasks:pending:${projectId}`;

export function keep(answer) {
  try { localStorage.setItem(key(answer.projectId), JSON.stringify(answer)); } catch { /* storage off */ }
}

export function kept(projectId) {
  try { return JSON.parse(localStorage.getItem(key(projectId))); } catch { return null; }
}

export function forget(projectId) {
  try { localStorage.removeItem(key(projectId)); } catch { /* storage off */ }
}
