// The volunteer API: lease units, send answers, skip. The volunteer cookie authenticates.
// Every failure becomes an ApiError whose message is in the volunteer's language.
import {_} from './i18n.js';

const TIMEOUT_MS = 30_000; // a hung request counts as a failed one

export class ApiError extends Error {
  constructor(message, status, {retryable = false, retryAfter = 0} = {}) {
    super(message);
    this.status = status; // 0 when the server was not reached
    this.retryable = retryable;
    this.retryAfter = retryAfter; // seconds the server asked us to wait (429, 503), else 0
  }
}

// Retry-After is a number of seconds or an HTTP date.
function retryAfterOf(response) {
  const value = response.headers.get('Retry-After');
  if (!value) return 0;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.min(600, Math.max(0, Math.ceil(seconds))) : 0;
}

// The error for an HTTP status, in the volunteer's language.
export function errorFor(status, retryAfter = 0) {
  if (status === 429) return new ApiError(_('The server is busy.'), status, {retryable: true, retryAfter});
  if (status >= 500) return new ApiError(_('The server is having trouble.'), status, {retryable: true, retryAfter});
  if (status === 401) return new ApiError(_('This device’s volunteer session has expired.'), status);
  if (status === 404) return new ApiError(_('This image is no longer in the project.'), status);
  if (status === 409) return new ApiError(_('This image was already answered from this device.'), status);
  if (status === 422) return new ApiError(_('The server could not take this answer as it is: change it and send it again.'), status);
  return new ApiError(_('The server could not take this answer (error %(status)s).', {status}), status);
}

async function call(method, url, body) {
  const init = {method, credentials: 'same-origin', headers: {Accept: 'application/json'},
    signal: AbortSignal.timeout?.(TIMEOUT_MS)};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    const text = navigator.onLine === false ? _('You are offline.') : _('No connection to the server.');
    throw new ApiError(text, 0, {retryable: true});
  }
  if (!response.ok) throw errorFor(response.status, retryAfterOf(response));
  return response.json();
}

// Lease up to `count` units: the ones this volunteer already holds come first.
export const nextUnits = (base, projectId, count) => call('POST', `${base}/projects/${projectId}/next?count=${count}`);

const wire = (a) => ({answer_id: a.answerId, payload: a.payload, duration_ms: a.durationMs});

export const sendAnswer = (base, a) => call('POST', `${base}/units/${a.unitId}/answers`, wire(a));

// Several answers in one request; each has its own result ({status, message, ...}).
export const sendAnswers = (base, list) =>
  call('POST', `${base}/answers`, {answers: list.map((a) => ({unit_id: a.unitId, ...wire(a)}))});

export const skipUnit = (base, unitId) => call('POST', `${base}/units/${unitId}/skip`);

export const getJson = (url) => call('GET', url);

// A tampered or expired cookie: loading the page again gives this device a new volunteer identity.
export async function renewIdentity(pageUrl) {
  try {
    const response = await fetch(pageUrl, {credentials: 'same-origin', cache: 'no-store'});
    return response.ok;
  } catch {
    return false;
  }
}

// crypto.randomUUID needs a secure context; getRandomValues works everywhere.
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
