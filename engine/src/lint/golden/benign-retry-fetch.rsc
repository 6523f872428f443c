:retry command={ /tool fetch url="https://example.net/health" output=none } delay=5 max=3 on-error={ :log warning "health check failed" }
