// twostep-webhook: everything lives in twostep_http; this only hands over to it.
#include "http/WebhookServer.hpp"

int main(int argc, char** argv) {
    return twostep::http::WebhookServer().run(argc, argv);
}
