// The REST client: same-origin requests with the session cookie; state-changing requests echo
// the CSRF token (from the lekiwi_csrf cookie) in X-CSRF-Token, as the server requires.

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === 'string' ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)lekiwi_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : null;
}

export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (!SAFE.has(method)) {
    const token = csrfToken();
    if (token) headers['X-CSRF-Token'] = token;
  }
  const response = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
  return data;
}

const q = (params) => {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) search.set(k, v);
  const s = search.toString();
  return s ? `?${s}` : '';
};

// One function per resource the pages use.
export const api = {
  me: () => request('GET', '/api/v1/auth/me'),
  login: (name, password) => request('POST', '/api/v1/auth/login', { name, password }),
  logout: () => request('POST', '/api/v1/auth/logout'),
  robot: (id) => request('GET', `/api/v1/robots/${encodeURIComponent(id)}`),
  telemetry: (id, params) =>
    request('GET', `/api/v1/robots/${encodeURIComponent(id)}/telemetry${q(params)}`),
  events: (id, params) =>
    request('GET', `/api/v1/robots/${encodeURIComponent(id)}/events${q(params)}`),
  timeline: (params) => request('GET', `/api/v1/timeline${q(params)}`),
  teleopSessions: (id) =>
    request('GET', `/api/v1/robots/${encodeURIComponent(id)}/teleop-sessions`),
  releases: () => request('GET', '/api/v1/releases'),
  deployments: () => request('GET', '/api/v1/deployments'),
  deployment: (id) => request('GET', `/api/v1/deployments/${encodeURIComponent(id)}`),
  // body: { release_version, robots | tag | all, waves, ... } (api/routes/deployments.py)
  startDeployment: (body) => request('POST', '/api/v1/deployments', body),
  // action: pause, resume, abort or rollback
  deploymentAction: (id, action) =>
    request('POST', `/api/v1/deployments/${encodeURIComponent(id)}/${action}`),
};
