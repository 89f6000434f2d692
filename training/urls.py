from django.urls import path

from training import views

urlpatterns = [
    path("training/runs/<int:run_id>/", views.run_page, name="training-run-page"),
    path(
        "training/runs/<int:run_id>/checkpoints/<int:step>/use",
        views.checkpoint_use,
        name="training-checkpoint-use",
    ),
]
