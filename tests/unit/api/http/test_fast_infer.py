import pytest

from baton.api.http.fast_infer import infer_route


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/m/infer", ("m", None)),
        ("/v2/models/m/versions/3/infer", ("m", "3")),
        ("/v2/models/m/versions/stable/infer", ("m", "stable")),
        ("/v2/models//infer", None),
        ("/v2/models/m/versions//infer", None),
        ("/v2/models/m", None),
        ("/v2/models/m/ready", None),
        ("/v2/models/m/versions/3", None),
        ("/v1/models/m/infer", None),
        ("/v2/model/m/infer", None),
        ("/v2/models/m/version/3/infer", None),
        ("/v2/models/m/infer/extra", None),
    ],
)
def test_infer_route(path, expected):
    assert infer_route(path) == expected
