// twostep-enroll: everything lives in twostep_enroll so the tests reach it; this only hands over.
#include <iostream>

#include "EnrollApp.hpp"

int main(int argc, char** argv) { return twostep::enroll::run(argc, argv, std::cout, std::cerr); }
