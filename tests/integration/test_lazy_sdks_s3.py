"""A worker writing to S3 loads boto3 and never the Azure SDK (see tests/unit/test_lazy_sdks.py)."""

from pathlib import Path

import pytest

from tests.plugins.object_stores import S3Server
from tests.unit.test_lazy_sdks import sdks_loaded_by_a_backup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_a_backup_to_s3_loads_boto3_and_not_the_azure_sdk(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    env = {
        "OBJECT_STORE_LOCATION_TYPE": "s3",
        "AWS_S3_BUCKET_NAME": s3_bucket,
        "AWS_S3_ENDPOINT_URL": s3_server.endpoint,
        "AWS_S3_REGION": "us-west-2",
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY": s3_server.access_key,
        "AWS_SECRET_KEY": s3_server.secret_key,
    }
    assert sdks_loaded_by_a_backup(tmp_path, env) == ["boto3", "botocore"]
