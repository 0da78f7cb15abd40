"""Login required everywhere, except where the view answers for itself."""

from django.contrib.auth.middleware import LoginRequiredMiddleware


class LoginRequired(LoginRequiredMiddleware):
    """Like Django's, but lets /api/ through: the API answers 401 in JSON instead of a
    redirect to the login page, and accepts bearer tokens."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
