/// A Store that passes every call to another store: derive from it and override one call to put
/// an event between a request's steps (for example, a lockout starting while a code is checked).
#pragma once

#include <memory>
#include <utility>

#include "core/Store.hpp"

namespace twostep::test {

class ForwardingStore : public core::Store {
public:
    explicit ForwardingStore(std::unique_ptr<core::Store> inner) : inner_(std::move(inner)) {}

    std::optional<core::User> findUser(std::string_view username) override {
        return inner_->findUser(username);
    }
    std::vector<core::User> listUsers() override { return inner_->listUsers(); }
    bool addUser(const core::NewUser& user, core::Seconds now, bool replace) override {
        return inner_->addUser(user, now, replace);
    }
    void importUsers(const std::vector<core::NewUser>& users, core::Seconds now) override {
        inner_->importUsers(users, now);
    }
    bool removeUser(std::string_view username) override { return inner_->removeUser(username); }
    bool setState(std::string_view username, core::UserState state, core::Seconds now) override {
        return inner_->setState(username, state, now);
    }
    bool resetSecret(std::string_view username, std::string_view sealedSecret,
                     core::Seconds now) override {
        return inner_->resetSecret(username, sealedSecret, now);
    }
    core::ChangeOutcome commit(const core::Change& change, const core::Settle& settle) override {
        return inner_->commit(change, settle);
    }
    void setCommitObserver(core::CommitObserver* observer) override {
        inner_->setCommitObserver(observer);
    }
    bool acceptStep(std::string_view username, std::int64_t step, core::UserState requiredState,
                    core::Seconds now, std::optional<int> driftSteps = std::nullopt) override {
        return inner_->acceptStep(username, step, requiredState, now, driftSteps);
    }
    bool confirmWithStep(std::string_view username, std::int64_t step,
                         core::Seconds now) override {
        return inner_->confirmWithStep(username, step, now);
    }
    core::FailureOutcome recordFailure(std::string_view username,
                                       const core::LockoutPolicy& policy,
                                       core::Seconds now) override {
        return inner_->recordFailure(username, policy, now);
    }
    bool unlock(std::string_view username, core::Seconds now) override {
        return inner_->unlock(username, now);
    }
    bool openGrant(std::string_view username, core::Seconds until, core::Seconds now) override {
        return inner_->openGrant(username, until, now);
    }
    bool revokeGrant(std::string_view username, core::Seconds now) override {
        return inner_->revokeGrant(username, now);
    }
    bool replaceRecoveryCodes(std::string_view username, const std::vector<std::string>& hashes,
                              core::Seconds now) override {
        return inner_->replaceRecoveryCodes(username, hashes, now);
    }
    bool consumeRecoveryCode(std::string_view username, std::string_view code,
                             core::Seconds now) override {
        return inner_->consumeRecoveryCode(username, code, now);
    }
    void putInvitation(const core::Invitation& invitation, core::Seconds now) override {
        inner_->putInvitation(invitation, now);
    }
    std::optional<core::Invitation> findInvitation(std::string_view username) override {
        return inner_->findInvitation(username);
    }
    std::vector<core::Invitation> listInvitations() override { return inner_->listInvitations(); }
    bool removeInvitation(std::string_view username) override {
        return inner_->removeInvitation(username);
    }
    bool beginEnrollment(const core::PendingEnrollment& pending, core::Seconds now) override {
        return inner_->beginEnrollment(pending, now);
    }
    std::optional<core::PendingEnrollment> findPendingEnrollment(
        std::string_view username) override {
        return inner_->findPendingEnrollment(username);
    }
    core::FailureOutcome recordEnrollmentFailure(std::string_view username,
                                                 const core::LockoutPolicy& policy,
                                                 core::Seconds now) override {
        return inner_->recordEnrollmentFailure(username, policy, now);
    }
    bool completeEnrollment(const core::PendingEnrollment& pending, std::int64_t step,
                            int driftSteps, const std::vector<std::string>& recoveryHashes,
                            const core::AuditEvent& audit, core::Seconds now) override {
        return inner_->completeEnrollment(pending, step, driftSteps, recoveryHashes, audit, now);
    }
    void appendAudit(const core::AuditEvent& event) override { inner_->appendAudit(event); }
    std::vector<core::AuditEvent> listAudit(const core::AuditFilter& filter) override {
        return inner_->listAudit(filter);
    }
    void resealAll(
        const std::function<std::string(const std::string&, const std::string&)>& reseal,
        std::string_view newKeyFingerprint) override {
        inner_->resealAll(reseal, newKeyFingerprint);
    }
    std::optional<std::string> keyFingerprint() override { return inner_->keyFingerprint(); }
    void setKeyFingerprintIfUnset(std::string_view fingerprint) override {
        inner_->setKeyFingerprintIfUnset(fingerprint);
    }
    int countUsers(core::UserState state) override { return inner_->countUsers(state); }
    int countLocked(core::Seconds now) override { return inner_->countLocked(now); }
    void ping() override { inner_->ping(); }

protected:
    core::Store& inner() { return *inner_; }

private:
    std::unique_ptr<core::Store> inner_;
};

}  // namespace twostep::test
