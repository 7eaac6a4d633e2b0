// Where an OAuth2 provider keeps its endpoints, which scope reads mail over IMAP, and the few ways
// providers differ in the consent and refresh flows. OAUTH2_PROVIDER picks one; any endpoint set
// explicitly (OAUTH2_TOKEN_URL, ..., IMAP_HOST) wins over the preset, and `custom` has no preset.

export const OAUTH2_PROVIDERS = ['google', 'microsoft', 'custom'] as const;
export type OAuthProvider = (typeof OAUTH2_PROVIDERS)[number];

/** What a provider preset fills in; every field may also be set explicitly. */
export interface ProviderEndpoints {
  imapHost: string;
  tokenUrl: string;
  authUrl: string;
  scope: string;
  /** Absent: the provider has no endpoint that revokes a refresh token (Microsoft). */
  revokeUrl: string | undefined;
}

export interface ProviderTraits {
  /** Extra parameters of the consent URL. */
  consentParams: Record<string, string>;
  /** Send the scope with every refresh grant (Microsoft's v2.0 endpoint asks for it). */
  scopeOnRefresh: boolean;
}

const GOOGLE: ProviderEndpoints = {
  imapHost: 'imap.gmail.com',
  tokenUrl: 'https://oauth2.googleapis.com/token',
  authUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
  scope: 'https://mail.google.com/',
  revokeUrl: 'https://oauth2.googleapis.com/revoke',
};

/** Microsoft identity platform (v2.0): Microsoft 365 work accounts and Outlook.com alike. */
function microsoft(tenant: string): ProviderEndpoints {
  const base = `https://login.microsoftonline.com/${encodeURIComponent(tenant)}/oauth2/v2.0`;
  return {
    imapHost: 'outlook.office365.com',
    tokenUrl: `${base}/token`,
    authUrl: `${base}/authorize`,
    // offline_access is what makes Microsoft return a refresh token.
    scope: 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access',
    revokeUrl: undefined,
  };
}

export const PROVIDER_TRAITS: Record<OAuthProvider, ProviderTraits> = {
  // Google returns a refresh token only on a forced consent with offline access.
  google: { consentParams: { access_type: 'offline', prompt: 'consent' }, scopeOnRefresh: false },
  // `prompt=consent` would ask a user again for what an admin may already have granted for the
  // whole tenant (and fail where users may not consent): only let them pick the account.
  microsoft: { consentParams: { prompt: 'select_account' }, scopeOnRefresh: true },
  // A server ignores parameters it does not know (RFC 6749 section 3.1); these help Google-like ones.
  custom: { consentParams: { access_type: 'offline', prompt: 'consent' }, scopeOnRefresh: false },
};

/** What the operator does instead of revoking, for a provider without a revocation endpoint. */
export const NO_REVOCATION_ADVICE: Partial<Record<OAuthProvider, string>> = {
  microsoft: 'Microsoft has no endpoint that revokes one refresh token. To cut the app off now: the user removes it at https://myapps.microsoft.com '
    + '(or https://account.live.com/consent/Manage for Outlook.com), or a Microsoft 365 admin revokes the user\'s sessions '
    + '(Entra admin center > Users > the user > Revoke sessions) or removes the app\'s consent (Enterprise applications > the app > Permissions).',
};

function preset(provider: OAuthProvider, tenant: string): Partial<ProviderEndpoints> {
  if (provider === 'google') return GOOGLE;
  if (provider === 'microsoft') return microsoft(tenant);
  return {};
}

export type Explicit = Partial<ProviderEndpoints>;

/** The endpoints in force and, for `custom`, which required ones nobody set. */
export function resolveProvider(provider: OAuthProvider, tenant: string, explicit: Explicit): { endpoints: Partial<ProviderEndpoints>; missing: Array<keyof ProviderEndpoints> } {
  const base = preset(provider, tenant);
  const endpoints: Partial<ProviderEndpoints> = {
    imapHost: explicit.imapHost ?? base.imapHost,
    tokenUrl: explicit.tokenUrl ?? base.tokenUrl,
    authUrl: explicit.authUrl ?? base.authUrl,
    scope: explicit.scope ?? base.scope,
    revokeUrl: explicit.revokeUrl ?? base.revokeUrl,
  };
  const required: Array<keyof ProviderEndpoints> = ['tokenUrl', 'authUrl', 'scope', 'imapHost'];
  return { endpoints, missing: required.filter((field) => endpoints[field] === undefined) };
}

export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9.-]*$/;

/** The setting that sets each endpoint explicitly, for error messages. */
export const ENDPOINT_SETTINGS = {
  imapHost: 'IMAP_HOST', tokenUrl: 'OAUTH2_TOKEN_URL', authUrl: 'OAUTH2_AUTH_URL', scope: 'OAUTH2_SCOPE', revokeUrl: 'OAUTH2_REVOKE_URL',
} as const satisfies Record<keyof ProviderEndpoints, string>;
