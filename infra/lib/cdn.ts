import { Duration } from 'aws-cdk-lib';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';

/** S3_PRESIGNED_URL_EXPIRATION's default: nothing is cached longer than a signed URL lives. */
export const SIGNED_URL_SECONDS = 3600;

/**
 * How long an edge keeps an object. A delete or an erase invalidates the cached copies at once
 * (CDN_DISTRIBUTION_ID); this is the bound when that invalidation fails: a deleted echo stays
 * playable from a cache for at most 15 minutes, to holders of a URL signed before the delete.
 * Objects never change under their key, so a shorter TTL costs only origin fetches.
 */
export const CACHE_TTL_SECONDS = 900;

export interface CdnOptions {
  /** The PEM of the CloudFront public key (the private half stays in Secrets Manager). */
  readonly publicKeyPem: string;
  readonly privateKeySecretName: string;
}

export interface PlaybackCdnProps extends CdnOptions {
  readonly bucket: s3.IBucket;
}

/** CloudFront in front of the audio bucket: signed URLs only, the bucket stays private (OAC). */
export class PlaybackCdn extends Construct {
  readonly distribution: cloudfront.Distribution;
  readonly publicKey: cloudfront.PublicKey;
  readonly keyGroup: cloudfront.KeyGroup;
  readonly privateKeySecret: secretsmanager.ISecret;

  constructor(scope: Construct, id: string, props: PlaybackCdnProps) {
    super(scope, id);
    this.publicKey = new cloudfront.PublicKey(this, 'PublicKey', {
      encodedKey: props.publicKeyPem,
      comment: 'echoes-storage playback URLs',
    });
    this.keyGroup = new cloudfront.KeyGroup(this, 'KeyGroup', { items: [this.publicKey] });
    this.privateKeySecret = secretsmanager.Secret.fromSecretNameV2(
      this,
      'PrivateKey',
      props.privateKeySecretName,
    );
    const cachePolicy = new cloudfront.CachePolicy(this, 'CachePolicy', {
      comment: 'audio objects; signatures are not part of the key',
      defaultTtl: Duration.seconds(Math.min(CACHE_TTL_SECONDS, SIGNED_URL_SECONDS)),
      maxTtl: Duration.seconds(Math.min(CACHE_TTL_SECONDS, SIGNED_URL_SECONDS)),
      minTtl: Duration.seconds(0),
      queryStringBehavior: cloudfront.CacheQueryStringBehavior.none(),
      headerBehavior: cloudfront.CacheHeaderBehavior.none(),
      cookieBehavior: cloudfront.CacheCookieBehavior.none(),
    });
    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: 'echoes-storage playback',
      defaultBehavior: {
        origin: origins.S3BucketOrigin.withOriginAccessControl(props.bucket),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
        cachedMethods: cloudfront.CachedMethods.CACHE_GET_HEAD,
        cachePolicy,
        trustedKeyGroups: [this.keyGroup],
      },
      priceClass: cloudfront.PriceClass.PRICE_CLASS_100,
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
    });
  }
}
