"""Who is calling: credentials checked before the first step, with how to log in.

boto3 looks for credentials in the environment, the shared files (profiles, SSO) and
the instance metadata, and says "Unable to locate credentials" at the first call that
needs them. Asked first, with `sts:GetCallerIdentity` (which no policy can deny), a
missing, expired or refused login is one clear error before anything is made.
"""

from __future__ import annotations

from botocore.exceptions import (
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)

from ...errors import IterativeError
from .api import AwsError, call, client

LOGIN = (
    "log in to AWS first: `aws sso login` (with AWS_PROFILE set to your SSO profile), "
    "`export AWS_PROFILE=<profile>` for a profile in ~/.aws/config, or AWS_ACCESS_KEY_ID "
    "and AWS_SECRET_ACCESS_KEY in the environment"
)
# What STS answers for credentials it does not accept (never transient).
REFUSED = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "AccessDenied",
    }
)
NOT_FOUND = (NoCredentialsError, PartialCredentialsError)
EXPIRED = (SSOError, TokenRetrievalError, CredentialRetrievalError)


def check_caller(region: str) -> str:
    """The caller's ARN; IterativeError with how to log in when there is no usable login."""
    try:
        found = call(client("sts", region).get_caller_identity)
    except NOT_FOUND as exc:
        raise IterativeError(f"no AWS credentials found ({exc}); {LOGIN}") from None
    except ProfileNotFound as exc:
        raise IterativeError(f"{exc}; {LOGIN}") from None
    except EXPIRED as exc:
        raise IterativeError(
            f"your AWS login could not be used ({type(exc).__name__}: {exc}); {LOGIN}"
        ) from None
    except AwsError as exc:
        if exc.code in REFUSED:
            raise IterativeError(f"AWS refused your credentials ({exc}); {LOGIN}") from None
        raise
    return str(found.get("Arn", ""))
