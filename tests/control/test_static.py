"""Static files are served by the app itself (daphne serves none), never from a CDN."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_stylesheet_is_served(client):
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert b".topbar" in b"".join(response.streaming_content)


def test_the_api_docs_load_swagger_from_our_own_static_files(operator_client):
    page = operator_client.get("/api/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert operator_client.get("/static/ninja/swagger-ui-bundle.js").status_code == 200
