from ninja import Router

router = Router(tags=["albums"])
images_router = Router(tags=["images"])
uploads_router = Router(tags=["uploads"])
