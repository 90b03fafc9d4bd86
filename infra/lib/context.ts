import { existsSync, readFileSync } from 'node:fs';
import type { StackProps } from 'aws-cdk-lib';
import { ENVIRONMENTS, type EnvironmentName } from '../../src/cli/setup/templates.ts';
import type { EchoesStorageStackProps } from './echoes-storage-stack.ts';
import { throttleFromContext } from './throttle.ts';

export const KEY_PAIR_HELP =
  'make a key pair with `openssl genrsa -out cdn.pem 2048 && openssl rsa -pubout -in cdn.pem -out cdn.pub.pem`, pass -c cdnPublicKey=cdn.pub.pem and store cdn.pem in Secrets Manager';

/** Why the stack needs both (the API refuses to start in production without them). */
export const AUTH_HELP =
  'the keys at AuthJwksUrl sign tokens for every app of the identity provider, and only the issuer and audience single out this API\'s; give the "iss" and "aud" of its access tokens';

type ContextProps = Omit<EchoesStorageStackProps, keyof StackProps>;

/** `-c key=value` values as stack props; every error names the context key and what it accepts. */
export function propsFromContext(get: (key: string) => unknown): ContextProps {
  const text = (key: string): string | undefined => {
    const v = get(key);
    if (v === undefined || v === '') return undefined;
    if (typeof v !== 'string')
      throw new Error(`-c ${key}: expected a string, got ${JSON.stringify(v)}.`);
    return v;
  };
  const environment = text('environment') ?? 'dev';
  if (!ENVIRONMENTS.includes(environment as EnvironmentName)) {
    throw new Error(`-c environment=${environment}: use one of ${ENVIRONMENTS.join(', ')}.`);
  }
  const env = environment as EnvironmentName;

  const layer = text('ffmpegLayerArn');
  if (
    layer !== undefined &&
    !/^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]+:\d+$/.test(layer)
  ) {
    throw new Error(
      `-c ffmpegLayerArn=${layer}: expected a layer version ARN, arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION.`,
    );
  }
  const email = text('alarmEmail');
  if (email !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email))
    throw new Error(`-c alarmEmail=${email}: expected an e-mail address.`);

  const rawThreshold = get('rejectedUploadsPer5Min');
  let rejectedUploadsPer5Min: number | undefined;
  if (rawThreshold !== undefined) {
    rejectedUploadsPer5Min = Number(rawThreshold);
    if (!Number.isInteger(rejectedUploadsPer5Min) || rejectedUploadsPer5Min < 1) {
      throw new Error(
        `-c rejectedUploadsPer5Min=${String(rawThreshold)}: expected a whole number >= 1.`,
      );
    }
  }

  const cdnFlag = get('cdn');
  const cdn = cdnFlag === true || cdnFlag === 'true';
  if (!cdn && cdnFlag !== undefined && cdnFlag !== false && cdnFlag !== 'false')
    throw new Error(`-c cdn=${String(cdnFlag)}: use true or false.`);
  let cdnOptions: EchoesStorageStackProps['cdn'];
  if (cdn) {
    const key = text('cdnPublicKey');
    if (key === undefined)
      throw new Error(`-c cdn=true needs -c cdnPublicKey=PEM-or-file: ${KEY_PAIR_HELP}.`);
    const pem = key.includes('-----BEGIN')
      ? key
      : existsSync(key)
        ? readFileSync(key, 'utf8')
        : undefined;
    if (pem === undefined)
      throw new Error(`-c cdnPublicKey=${key}: no such file, and not a PEM key; ${KEY_PAIR_HELP}.`);
    if (!pem.includes('-----BEGIN PUBLIC KEY-----')) {
      throw new Error(
        `-c cdnPublicKey: expected a PEM public key (-----BEGIN PUBLIC KEY-----), never the private key; ${KEY_PAIR_HELP}.`,
      );
    }
    cdnOptions = {
      publicKeyPem: pem.trim(),
      privateKeySecretName: text('cdnPrivateKeySecret') ?? `echoes-storage/${env}/cdn-private-key`,
    };
  }

  const apiThrottle = throttleFromContext(get);

  const audience = text('authAudience');
  const issuer = text('authIssuer');
  const missing = [
    issuer === undefined ? '-c authIssuer=ISSUER' : '',
    audience === undefined ? '-c authAudience=AUDIENCE' : '',
  ].filter(Boolean);
  if (issuer === undefined || audience === undefined)
    throw new Error(
      `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} required: ${AUTH_HELP}.`,
    );
  return {
    environment: env,
    ...(layer ? { ffmpegLayerArn: layer } : {}),
    ...(email ? { alarmEmail: email } : {}),
    authAudience: audience,
    authIssuer: issuer,
    ...(rejectedUploadsPer5Min !== undefined ? { rejectedUploadsPer5Min } : {}),
    ...(cdnOptions ? { cdn: cdnOptions } : {}),
    ...(apiThrottle ? { apiThrottle } : {}),
  };
}
