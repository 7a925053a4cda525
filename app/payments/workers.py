class PaymentWorkers:
    def __init__(self, settings, sessionmaker, providers):
        pass

    def start(self):
        pass

    async def stop(self):
        pass
