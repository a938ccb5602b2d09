"""The API docs at /docs work offline: every asset comes from the app itself."""

import re


def test_the_api_docs_page_loads_its_assets_from_the_app_not_a_cdn(client):
    page = client.get("/docs")

    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200
    assert "/openapi.json" in page.text
    assert "/api/events" in client.get("/openapi.json").json()["paths"]
