def build_providers(settings, http):
    return {}
